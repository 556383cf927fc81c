# GPU call 11 (nvidia-h200-x2), issue 10: deterministic kernels + tree_sum gradient order (working tree of main).
# Phase 1: reference 100 steps, seed 0, on GPU0 and GPU1 at once (run-to-run: same weights_sha256?).
# Phase 2: the same on 2 GPUs with torchrun (same weights_sha256 as 1 GPU? val at every eval?).
# Phase 3: GPU0 --deterministic false, 60 steps (the throughput cost); GPU1 speedrun seed 0 deterministic.
export PYTHONUNBUFFERED=1 TORCHINDUCTOR_CACHE_DIR=/tmp/ind NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
mkdir -p data /tmp/L && tar xzf .carry/ref.tar.gz -C data
R="train_plm.py --preset reference --steps 100 --eval_every 25 --seed 0 --save_model false --log_dir /tmp/L"
(CUDA_VISIBLE_DEVICES=0 timeout 290 python3 $R --run_id det_1gpu_a > /tmp/L/o_a.out 2>&1; echo "a done $SECONDS") &
(CUDA_VISIBLE_DEVICES=1 timeout 290 python3 $R --run_id det_1gpu_b > /tmp/L/o_b.out 2>&1; echo "b done $SECONDS") &
wait
timeout $(( 420 - SECONDS )) python3 -m torch.distributed.run --standalone --nproc_per_node=2 $R --run_id det_2gpu > /tmp/L/o_2gpu.out 2>&1; echo "2gpu done $SECONDS"
(CUDA_VISIBLE_DEVICES=0 timeout $(( 575 - SECONDS )) python3 train_plm.py --preset reference --steps 60 --eval_every 0 --seed 0 --save_model false --log_dir /tmp/L --deterministic false --run_id nondet_1gpu60 > /tmp/L/o_nd.out 2>&1; echo "nondet done $SECONDS") &
(CUDA_VISIBLE_DEVICES=1 timeout $(( 575 - SECONDS )) python3 train_plm.py --stop_at_target false --seed 0 --save_model false --log_dir /tmp/L --run_id sr_det_s0 > /tmp/L/o_sr.out 2>&1; echo "sr done $SECONDS") &
wait
cd /tmp/L && tar czf $OUT/call11.tar.gz . ; cd - > /dev/null
for f in /tmp/L/*.txt; do echo "== $f"; grep -h "^warm-up\|^step:[0-9]*/[0-9]* val_loss\|^target" $f | cut -c1-120; grep -o '"tokens_per_s.*' $f | cut -c1-330; done
for f in /tmp/L/*.out; do echo "== $f"; grep -i "warn" $f | sort | uniq -c | head -5 | cut -c1-300; tail -n 2 $f | cut -c1-200; done
