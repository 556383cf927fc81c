# GPU call 13 (nvidia-h200-x2), branch grouped-ns: does batching Newton-Schulz over Muon's sets win back the
# ~5% that per-parameter Newton-Schulz cost (records/2026-11-30_Deterministic), with the same bits on 1 and 2 GPUs?
# Phase 1, at once: GPU0 this branch, GPU1 main's train_plm.py (exp/train_plm_main.py), reference 100 steps seed 0.
# Phase 2: this branch on 2 GPUs: the same weights_sha256 as phase 1's GPU0 run?
export PYTHONUNBUFFERED=1 TORCHINDUCTOR_CACHE_DIR=/tmp/ind NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
mkdir -p data /tmp/L && tar xzf .carry/ref.tar.gz -C data
# Phase 0: Muon's step alone, branch (GPU0) and main (GPU1): GPU and host ms per step; then, on GPU0,
# exp/bench_attn.py: FlexAttention against FlashAttention-2 varlen (records/2026-11-30_AttentionKernels)
# (exp/ held this folder's scripts, bench_attn.py, and exp/train_plm_main.py = train_plm.py of commit a98cdf0)
(CUDA_VISIBLE_DEVICES=0 timeout 60 python3 exp/bench_muon.py train_plm.py sets > /tmp/L/muon_sets.out 2>&1; CUDA_VISIBLE_DEVICES=0 timeout 110 python3 exp/bench_attn.py > /tmp/L/attn.out 2>&1) &
(CUDA_VISIBLE_DEVICES=1 timeout 60 python3 exp/bench_muon.py exp/train_plm_main.py main > /tmp/L/muon_main.out 2>&1) &
wait
A="--preset reference --steps 100 --eval_every 25 --seed 0 --save_model false --log_dir /tmp/L"
(CUDA_VISIBLE_DEVICES=0 TORCH_LOGS=recompiles timeout 250 python3 train_plm.py $A --run_id sets_1gpu > /tmp/L/o_sets1.out 2>&1; echo "sets1 done $SECONDS") &
(CUDA_VISIBLE_DEVICES=1 timeout 250 python3 exp/train_plm_main.py $A --run_id main_1gpu > /tmp/L/o_main1.out 2>&1; echo "main1 done $SECONDS") &
wait
timeout $(( 535 - SECONDS )) python3 -m torch.distributed.run --standalone --nproc_per_node=2 train_plm.py $A --run_id sets_2gpu > /tmp/L/o_sets2.out 2>&1; echo "sets2 done $SECONDS"
cd /tmp/L && tar czf $OUT/call13.tar.gz . ; cd - > /dev/null
for f in /tmp/L/*.txt; do echo "== $f"; grep -ah "^warm-up\|^step:[0-9]*/[0-9]* val_loss" $f | cut -c1-110; grep -ao '"tokens_per_s.*' $f | cut -c1-330; done
grep -h "^MUON" /tmp/L/muon_*.out; grep -ah "^VARLEN\|^BATCH\|^ATTN" /tmp/L/attn.out | cut -c1-600
for f in /tmp/L/*.out; do echo "== $f"; tail -n 2 $f | cut -c1-200; done
