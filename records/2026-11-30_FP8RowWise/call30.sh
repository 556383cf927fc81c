# GPU call 30 (nvidia-h200-x2): torch.profiler over 3 steady reference steps, --fp8 true (GPU0) and --fp8 false
# (GPU1) at once: why FP8 is 23% slower in training (call 29) when the 4-block slice was 3.5% faster (call 28);
# and the GPU's idle time between kernels.
export PYTHONUNBUFFERED=1 TORCHINDUCTOR_CACHE_DIR=/tmp/ind NCCL_NVLS_ENABLE=0
mkdir -p data /tmp/L && tar xzf .carry/ref.tar.gz -C data
A="--preset reference --steps 18 --eval_every 0 --seed 0 --save_model false --log_dir /tmp/L"
(CUDA_VISIBLE_DEVICES=0 timeout 400 python3 exp/profile_step.py $A --fp8 true --run_id prof_fp8 > /tmp/L/prof_fp8.out 2>&1; echo "fp8 done $SECONDS") &
(CUDA_VISIBLE_DEVICES=1 timeout 400 python3 exp/profile_step.py $A --fp8 false --run_id prof_bf16 > /tmp/L/prof_bf16.out 2>&1; echo "bf16 done $SECONDS") &
wait
for v in fp8 bf16; do echo "== $v"; grep -a "^PROFILE\|^GAP\|^MEMORY\|tokens/s" /tmp/L/prof_$v.out | cut -c1-220; grep -a "^KERNEL" /tmp/L/prof_$v.out | head -30 | cut -c1-150; done
cp /tmp/L/prof_*.out $OUT/
