# GPU call 68 (session 16, nvidia-h200-x2): (1) the README's benchmark command on both GPUs (torchrun, 2 processes,
# 4 micro-batches each), this code (255e771): scaling, and whether it trains call 67's 1-GPU bits;
# (2) call 67's pair with the GPUs swapped: main before it (077d777) on GPU0, this code on GPU1, cold caches.
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
mkdir -p data /tmp/L && tar xzf .carry/ref.tar.gz -C data
nvidia-smi --query-gpu=index,serial,pci.bus_id --format=csv,noheader
TORCHINDUCTOR_CACHE_DIR=/tmp/ind2g TORCH_LOGS=recompiles timeout 250 torchrun --standalone --nproc_per_node=2 train_plm.py --preset reference --log_dir /tmp/L --run_id reference_200steps_2gpu > /tmp/L/new_2gpu_console.out 2>&1
echo "2gpu $SECONDS"
CUDA_VISIBLE_DEVICES=1 TORCHINDUCTOR_CACHE_DIR=/tmp/ind1 TORCH_LOGS=recompiles timeout 330 python3 train_plm.py --preset reference --log_dir /tmp/L --run_id reference_200steps_gpu1 > /tmp/L/new_gpu1_console.out 2>&1 &
CUDA_VISIBLE_DEVICES=0 TORCHINDUCTOR_CACHE_DIR=/tmp/ind0 TORCH_LOGS=recompiles timeout 330 python3 exp/train_plm_main.py --preset reference --log_dir /tmp/L --run_id main_reference_200steps_gpu0 > /tmp/L/main_gpu0_console.out 2>&1 &
wait; echo "pair $SECONDS"
for r in new_2gpu_console new_gpu1_console main_gpu0_console; do echo "== $r"; grep -a "Recompiling\|Error\|warm-up" /tmp/L/$r.out | head -10 | cut -c1-250; grep -a "^RESULT" /tmp/L/$r.out | python3 -c "
import json,sys
for l in sys.stdin: d=json.loads(l[7:]); print({k:d.get(k) for k in ('world_size','tokens_per_s','step_time_ms_median','mfu','warmup_s','first_step_s','val_loss','test_loss','weights_sha256')})"; done
cp /tmp/L/* $OUT/; ls $OUT
