# GPU call 12 (nvidia-h200-x2), issue 10: one-hot embedding lookups (deterministic backward), inductor's
# deterministic mode (no timing-based kernel choice), tree_sum gradient order. Working tree of main.
# Phase 1: reference 100 steps seed 0, GPU0 --deterministic true, GPU1 --deterministic false (the cost, same conditions).
# Phase 2: the deterministic run on 2 GPUs (torchrun): same weights_sha256 and val losses as phase 1's GPU0 run?
export PYTHONUNBUFFERED=1 TORCHINDUCTOR_CACHE_DIR=/tmp/ind NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
mkdir -p data /tmp/L && tar xzf .carry/ref.tar.gz -C data
R="train_plm.py --preset reference --steps 100 --eval_every 25 --seed 0 --save_model false --log_dir /tmp/L"
(CUDA_VISIBLE_DEVICES=0 TORCH_LOGS=recompiles timeout 265 python3 $R --run_id det_1gpu > /tmp/L/o_det1.out 2>&1; echo "det1 done $SECONDS") &
(CUDA_VISIBLE_DEVICES=1 timeout 265 python3 $R --deterministic false --run_id nondet_1gpu > /tmp/L/o_nondet1.out 2>&1; echo "nondet1 done $SECONDS") &
wait
timeout $(( 535 - SECONDS )) python3 -m torch.distributed.run --standalone --nproc_per_node=2 $R --run_id det_2gpu > /tmp/L/o_det2.out 2>&1; echo "det2 done $SECONDS"
cd /tmp/L && tar czf $OUT/call12.tar.gz . ; cd - > /dev/null
for f in /tmp/L/*.txt; do echo "== $f"; grep -ah "^warm-up\|^step:[0-9]*/[0-9]* val_loss\|^step:[0-9]*0/100 train" $f | cut -c1-110; grep -ao '"tokens_per_s.*' $f | cut -c1-330; done
for f in /tmp/L/*.out; do echo "== $f"; grep -ai "warn\|recompil" $f | sort | uniq -c | head -5 | cut -c1-250; tail -n 2 $f | cut -c1-200; done
