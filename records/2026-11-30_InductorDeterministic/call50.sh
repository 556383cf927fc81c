# GPU call 50 (nvidia-h200-x2), session 13: main (inductor's deterministic mode as a compile option) on 2 GPUs,
# 60 reference steps, seed 0: the same weights_sha256 as 1 GPU (bab54c8e1885c93f, calls 48 and 49 on two
# machines)? The MuonSets 2-GPU divergence (cause not found) ran with the global flag, which dynamo reset.
export PYTHONUNBUFFERED=1 TORCHINDUCTOR_CACHE_DIR=/tmp/ind NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
mkdir -p data /tmp/L && tar xzf .carry/ref.tar.gz -C data
nvidia-smi --query-gpu=index,serial,pci.bus_id --format=csv,noheader
A="--preset reference --steps 60 --eval_every 60 --seed 0 --save_model false --log_dir /tmp/L"
timeout 330 torchrun --standalone --nproc_per_node=2 train_plm.py $A --run_id det60_2gpu > /tmp/L/det60_2gpu_stdout.out 2>&1; echo "2gpu rc $? $SECONDS"
grep -a "warm-up\|step:10/\|step:60/\|^RESULT\|test_loss\|Error" /tmp/L/det60_2gpu_stdout.out | cut -c1-900
cd /tmp/L && tar czf $OUT/call50.tgz *.out *.txt; ls $OUT
