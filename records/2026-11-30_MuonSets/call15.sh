# GPU call 15 (nvidia-h200-x2): call 13's branch grouped-ns on 2 GPUs trained other bits than on 1 GPU
# (843b12214bf8a723 against f182e37907724232), though its Muon alone is bitwise equal on 2 NCCL ranks (call 14).
# Is it the branch or the 2-GPU path? 20 reference steps: 1 GPU branch || 1 GPU main, then 2 GPUs: branch, main, branch.
export PYTHONUNBUFFERED=1 TORCHINDUCTOR_CACHE_DIR=/tmp/ind NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
mkdir -p data /tmp/L && tar xzf .carry/ref.tar.gz -C data
A="--preset reference --steps 20 --eval_every 0 --seed 0 --save_model false --log_dir /tmp/L"
(CUDA_VISIBLE_DEVICES=0 timeout 170 python3 train_plm.py $A --run_id sets_1gpu > /tmp/L/o_sets1.out 2>&1; echo "sets1 done $SECONDS") &
(CUDA_VISIBLE_DEVICES=1 timeout 170 python3 exp/train_plm_main.py $A --run_id main_1gpu > /tmp/L/o_main1.out 2>&1; echo "main1 done $SECONDS") &
wait
T="python3 -m torch.distributed.run --standalone --nproc_per_node=2"
timeout 130 $T train_plm.py $A --run_id sets_2gpu_a > /tmp/L/o_sets2a.out 2>&1; echo "sets2a done $SECONDS"
timeout 130 $T exp/train_plm_main.py $A --run_id main_2gpu > /tmp/L/o_main2.out 2>&1; echo "main2 done $SECONDS"
timeout $(( 560 - SECONDS )) $T train_plm.py $A --run_id sets_2gpu_b > /tmp/L/o_sets2b.out 2>&1; echo "sets2b done $SECONDS"
cd /tmp/L && tar czf $OUT/call15.tar.gz . ; cd - > /dev/null
for f in /tmp/L/*.txt; do echo "== $f"; grep -ah "^warm-up\|^step:[0-9]*/[0-9]* train" $f | cut -c1-90; grep -ao '"weights_sha256.*' $f | cut -c1-60; done
for f in /tmp/L/*.out; do echo "== $f"; tail -n 1 $f | cut -c1-120; done
