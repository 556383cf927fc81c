# GPU call 61 (session 15, nvidia-h200-x2): doc_attention in place of FlexAttention, after making the kernels'
# scales constexpr (in call 60, under inductor, they came as fp64 and the forward failed to compile).
# (1) compiled vs eager gradients, 4 blocks, base (main 1fae8ac) and new. (2) The README's benchmark command,
# cold caches, new on GPU0 and base on GPU1 at the same time.
export PYTHONUNBUFFERED=1
mkdir -p data /tmp/L && tar xzf .carry/ref.tar.gz -C data
nvidia-smi --query-gpu=index,serial,pci.bus_id --format=csv,noheader
CUDA_VISIBLE_DEVICES=0 TORCHINDUCTOR_CACHE_DIR=/tmp/ind_gc timeout 110 python3 exp/gradcheck_gpu.py 4 exp/train_plm_base.py train_plm.py > /tmp/L/gradcheck.out 2>&1
echo "checks $SECONDS"; grep -a "^GRAD\|Error" /tmp/L/gradcheck.out | cut -c1-600
CUDA_VISIBLE_DEVICES=0 TORCHINDUCTOR_CACHE_DIR=/tmp/ind0 TORCH_LOGS=recompiles timeout 420 python3 train_plm.py --preset reference --log_dir /tmp/L --run_id new_gpu0 > /tmp/L/new_gpu0.out 2>&1 &
CUDA_VISIBLE_DEVICES=1 TORCHINDUCTOR_CACHE_DIR=/tmp/ind1 TORCH_LOGS=recompiles timeout 420 python3 exp/train_plm_base.py --preset reference --log_dir /tmp/L --run_id base_gpu1 > /tmp/L/base_gpu1.out 2>&1 &
wait; echo "runs $SECONDS"
for r in new_gpu0 base_gpu1; do echo "== $r"; grep -a "Recompiling\|Error\|warm-up" /tmp/L/$r.out | head -8 | cut -c1-250; grep -a "^RESULT" /tmp/L/$r.out | python3 -c "
import json,sys
for l in sys.stdin: d=json.loads(l[7:]); print({k:d.get(k) for k in ('tokens_per_s','step_time_ms_median','mfu','warmup_s','first_step_s','val_loss','test_loss','weights_sha256')})"; done
cd /tmp/L && tar czf $OUT/call61.tgz *.out *.txt; ls $OUT
