# GPU call 60 (session 15, nvidia-h200-x2): doc_attention (own Triton kernels) in place of FlexAttention.
# (1) GPU checks: doc_attention vs float32 segment_attention; compiled vs eager gradients, 4 blocks, base and new.
# (2) 60 reference steps, cold caches, crossover: round 1 base GPU0 / new GPU1, round 2 new GPU0 / base GPU1.
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
mkdir -p data /tmp/L && tar xzf .carry/ref.tar.gz -C data
nvidia-smi --query-gpu=index,serial,pci.bus_id --format=csv,noheader
CUDA_VISIBLE_DEVICES=1 timeout 60 python3 exp/gpu_da_check.py train_plm.py > /tmp/L/da_check.out 2>&1 &
CUDA_VISIBLE_DEVICES=0 TORCHINDUCTOR_CACHE_DIR=/tmp/ind_gc timeout 110 python3 exp/gradcheck_gpu.py 4 exp/train_plm_base.py train_plm.py > /tmp/L/gradcheck.out 2>&1
wait; echo "checks $SECONDS"
cat /tmp/L/da_check.out | cut -c1-400; grep -a "^GRAD\|Error" /tmp/L/gradcheck.out | cut -c1-600
A="--preset reference --steps 60 --eval_every 60 --seed 0 --save_model false --log_dir /tmp/L"
for round in 1 2; do
  if [ $round = 1 ]; then G_BASE=0; G_NEW=1; else G_BASE=1; G_NEW=0; fi
  CUDA_VISIBLE_DEVICES=$G_BASE TORCHINDUCTOR_CACHE_DIR=/tmp/ind_b$round TORCH_LOGS=recompiles timeout 215 python3 exp/train_plm_base.py $A --run_id base_r${round}_gpu$G_BASE > /tmp/L/base_r$round.out 2>&1 &
  CUDA_VISIBLE_DEVICES=$G_NEW TORCHINDUCTOR_CACHE_DIR=/tmp/ind_n$round TORCH_LOGS=recompiles timeout 215 python3 train_plm.py $A --run_id new_r${round}_gpu$G_NEW > /tmp/L/new_r$round.out 2>&1 &
  wait; echo "round $round $SECONDS"
done
for r in base_r1 new_r1 base_r2 new_r2; do echo "== $r"; grep -a "Recompiling\|Error\|error" /tmp/L/$r.out | head -5 | cut -c1-300; grep -a "^RESULT" /tmp/L/$r.out | python3 -c "
import json,sys
for l in sys.stdin: d=json.loads(l[7:]); print({k:d.get(k) for k in ('tokens_per_s','step_time_ms_median','mfu','warmup_s','first_step_s','val_loss','weights_sha256')})"; done
cd /tmp/L && tar czf $OUT/call60.tgz *.out *.txt; ls $OUT
