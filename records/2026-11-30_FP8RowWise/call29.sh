# GPU call 29 (nvidia-h200-x2): the reference preset, 80 steps, seed 0: --fp8 true against --fp8 false (the same
# code), both at once, then again with the GPUs swapped. Round 1 compiles from a cold cache (fp8 with
# TORCH_LOGS=recompiles).
export PYTHONUNBUFFERED=1 TORCHINDUCTOR_CACHE_DIR=/tmp/ind NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
mkdir -p data /tmp/L && tar xzf .carry/ref.tar.gz -C data
A="--preset reference --steps 80 --eval_every 40 --seed 0 --save_model false --log_dir /tmp/L"
(CUDA_VISIBLE_DEVICES=0 TORCH_LOGS=recompiles timeout 280 python3 train_plm.py $A --fp8 true --run_id fp8_gpu0 > /tmp/L/o_fp8_gpu0.out 2>&1; echo "fp8_gpu0 done $SECONDS") &
(CUDA_VISIBLE_DEVICES=1 timeout 280 python3 train_plm.py $A --fp8 false --run_id bf16_gpu1 > /tmp/L/o_bf16_gpu1.out 2>&1; echo "bf16_gpu1 done $SECONDS") &
wait
(CUDA_VISIBLE_DEVICES=0 timeout $(( 575 - SECONDS )) python3 train_plm.py $A --fp8 false --run_id bf16_gpu0 > /tmp/L/o_bf16_gpu0.out 2>&1; echo "bf16_gpu0 done $SECONDS") &
(CUDA_VISIBLE_DEVICES=1 timeout $(( 575 - SECONDS )) python3 train_plm.py $A --fp8 true --run_id fp8_gpu1 > /tmp/L/o_fp8_gpu1.out 2>&1; echo "fp8_gpu1 done $SECONDS") &
wait
cp /tmp/L/*.txt /tmp/L/o_*.out $OUT/ 2>/dev/null
for f in /tmp/L/*.txt; do echo "== $f"; grep -ah "^warm-up\|^measured\|^step:[0-9]*/[0-9]* val_loss" $f | cut -c1-120; grep -ao '"tokens_per_s.*' $f | cut -c1-140; grep -ao '"weights_sha256[^,]*' $f; done
grep -ac "Recompiling\|recompil" /tmp/L/o_fp8_gpu0.out
for f in /tmp/L/o_*.out; do echo "== $f"; tail -n 2 $f | cut -c1-200; done
