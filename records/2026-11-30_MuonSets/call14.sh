# GPU call 14 (nvidia-h200-x2): Muon alone on 2 NCCL ranks against 1 rank given the summed gradient, reference
# model, random gradients, 3 steps: the branch (train_plm.py), the previous main (exp/train_plm_main.py), and the
# branch with CUDA_LAUNCH_BLOCKING=1. Output: call14.out.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
R="python3 -m torch.distributed.run --standalone --nproc_per_node=2 exp/muon_dist_check.py"
for f in train_plm.py exp/train_plm_main.py; do echo "== $f"; timeout 100 $R $f 2>&1 | grep -a "MUONCHECK\|Error\|error" | sort | head -12; done
echo "== branch, CUDA_LAUNCH_BLOCKING=1"; CUDA_LAUNCH_BLOCKING=1 timeout 120 $R train_plm.py 2>&1 | grep -a "MUONCHECK\|Error" | sort | head -12
