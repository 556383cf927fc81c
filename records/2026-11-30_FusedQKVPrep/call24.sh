# GPU call 24 (nvidia-h200-x2), this code: (1) the speedrun preset (README's first benchmark command, stops at
# val 2.70) on GPU0 while GPU1 runs 20 reference steps (seed 0) for their weights digest; (2) the same 20 steps
# on 2 GPUs twice, each rank compiling afresh (inductor's caches off): do they train the 1-GPU bits?
export PYTHONUNBUFFERED=1 TORCHINDUCTOR_CACHE_DIR=/tmp/ind NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
mkdir -p data /tmp/L && tar xzf .carry/ref.tar.gz -C data
R="--preset reference --steps 20 --eval_every 0 --seed 0 --save_model false --log_dir /tmp/L"
(CUDA_VISIBLE_DEVICES=0 timeout 250 python3 train_plm.py --save_model false --log_dir /tmp/L --run_id speedrun_s0 > /tmp/L/o_speedrun_s0.out 2>&1; echo "speedrun done $SECONDS") &
(CUDA_VISIBLE_DEVICES=1 timeout 250 python3 train_plm.py $R --run_id ref20_1gpu > /tmp/L/o_ref20_1gpu.out 2>&1; echo "ref20_1gpu done $SECONDS") &
wait
T="python3 -m torch.distributed.run --standalone --nproc_per_node=2"
for k in a b; do LIM=$(( 575 - SECONDS )); [ $k = a ] && LIM=$(( LIM / 2 )); TORCHINDUCTOR_FORCE_DISABLE_CACHES=1 timeout $LIM $T train_plm.py $R --run_id ref20_2gpu_$k > /tmp/L/o_ref20_2gpu_$k.out 2>&1; echo "ref20_2gpu_$k done $SECONDS"; done
cp /tmp/L/*.txt /tmp/L/o_*.out $OUT/ 2>/dev/null
for f in /tmp/L/*.txt; do echo "== $f"; grep -ah "^warm-up\|^step:[0-9]*/[0-9]* val_loss\|reached\|target" $f | grep -v "^{" | cut -c1-160 | tail -6; grep -ao '"tokens_per_s": [0-9]*\|"time_to_target_s": [0-9.a-z]*\|"val_loss": [0-9.]*' $f | tr '\n' ' '; echo; grep -ao '"weights_sha256[^,]*' $f; done
for f in /tmp/L/o_*.out; do echo "== $f"; tail -n 1 $f | cut -c1-120; done
