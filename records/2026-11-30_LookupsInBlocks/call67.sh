# GPU call 67 (session 16, nvidia-h200-x2): the README's benchmark command, cold caches: this code (255e771) on
# GPU0 and main before it (077d777, exp/train_plm_main.py) on GPU1, at the same time.
export PYTHONUNBUFFERED=1
mkdir -p data /tmp/L && tar xzf .carry/ref.tar.gz -C data
nvidia-smi --query-gpu=index,serial,pci.bus_id --format=csv,noheader
git log --oneline 2>/dev/null | head -1
CUDA_VISIBLE_DEVICES=0 TORCHINDUCTOR_CACHE_DIR=/tmp/ind0 TORCH_LOGS=recompiles timeout 540 python3 train_plm.py --preset reference --log_dir /tmp/L --run_id reference_200steps > /tmp/L/new_gpu0_console.out 2>&1 &
CUDA_VISIBLE_DEVICES=1 TORCHINDUCTOR_CACHE_DIR=/tmp/ind1 TORCH_LOGS=recompiles timeout 540 python3 exp/train_plm_main.py --preset reference --log_dir /tmp/L --run_id main_reference_200steps_gpu1 > /tmp/L/main_gpu1_console.out 2>&1 &
wait; echo "runs $SECONDS"
for r in new_gpu0_console main_gpu1_console; do echo "== $r"; grep -a "Recompiling\|Error\|warm-up" /tmp/L/$r.out | head -8 | cut -c1-250; grep -a "^RESULT" /tmp/L/$r.out | python3 -c "
import json,sys
for l in sys.stdin: d=json.loads(l[7:]); print({k:d.get(k) for k in ('tokens_per_s','step_time_ms_median','mfu','peak_tflops','warmup_s','first_step_s','val_loss','test_loss','weights_sha256')})"; done
cp /tmp/L/* $OUT/; ls $OUT
