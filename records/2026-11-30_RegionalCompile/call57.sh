# GPU call 57 (session 14, nvidia-h200-x2): regional compilation (train_plm.py = exp/train_plm_rc.py: each block,
# the embedding and the head compiled on their own) with the README's benchmark command on GPU0, cold cache;
# main's code (exp/train_plm_main.py) with the same command on GPU1, started 60 s later (after rc's compile).
export PYTHONUNBUFFERED=1
mkdir -p data /tmp/L && tar xzf .carry/ref.tar.gz -C data
nvidia-smi --query-gpu=index,serial,pci.bus_id --format=csv,noheader
CUDA_VISIBLE_DEVICES=0 TORCHINDUCTOR_CACHE_DIR=/tmp/ind0 TORCH_LOGS=recompiles timeout 520 python3 train_plm.py --preset reference --log_dir /tmp/L --run_id rc_gpu0 > /tmp/L/rc_gpu0.out 2>&1 &
sleep 60
CUDA_VISIBLE_DEVICES=1 TORCHINDUCTOR_CACHE_DIR=/tmp/ind1 TORCH_LOGS=recompiles timeout 460 python3 exp/train_plm_main.py --preset reference --log_dir /tmp/L --run_id main_gpu1 > /tmp/L/main_gpu1.out 2>&1 &
wait
echo "done $SECONDS"
for r in rc_gpu0 main_gpu1; do echo "== $r"; grep -a "warm-up\|measured\|val_loss\|Recompiling\|Error" /tmp/L/$r.out | cut -c1-200; grep -a "^RESULT" /tmp/L/$r.out | python3 -c "
import json,sys
for l in sys.stdin: d=json.loads(l[7:]); print({k:d[k] for k in ('tokens_per_s','step_time_ms_median','mfu','warmup_s','first_step_s','val_loss','test_loss','weights_sha256')})"; done
cd /tmp/L && tar czf $OUT/call57.tgz *.out *.txt; ls $OUT
