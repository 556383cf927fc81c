# GPU call 54 (session 14): call 53's ncr6 failed in its first FP8 product (CUBLAS_STATUS_EXECUTION_FAILED in
# _scaled_mm inside the compiled region). (1) main's GPU gradients, compiled vs eager, 4 blocks. (2) ncr6d
# (prints the operands' layouts) under CUDA_LAUNCH_BLOCKING=1. (3) ncr6b (operands copied to fresh dense
# buffers when not dense or 256-byte aligned; scale_b always a fresh (1, N)) gradients; if they hold, 60
# reference steps, cold cache. Generated code that calls fp8_mm is kept.
export PYTHONUNBUFFERED=1
mkdir -p data /tmp/L && tar xzf .carry/ref.tar.gz -C data
nvidia-smi --query-gpu=serial,pci.bus_id --format=csv,noheader
TORCHINDUCTOR_CACHE_DIR=/tmp/ind_gm timeout 100 python3 exp/gradcheck_gpu.py 4 train_plm.py > /tmp/L/gc_main.out 2>&1; echo "gc main rc $? $SECONDS"
FP8_DIAG=1 CUDA_LAUNCH_BLOCKING=1 TORCHINDUCTOR_CACHE_DIR=/tmp/ind_gd timeout 100 python3 exp/gradcheck_gpu.py 4 exp/train_plm_ncr6d.py > /tmp/L/gc_ncr6d.out 2>&1; echo "gc ncr6d rc $? $SECONDS"
FP8_DIAG=1 TORCHINDUCTOR_CACHE_DIR=/tmp/ind_gb timeout 100 python3 exp/gradcheck_gpu.py 4 exp/train_plm_ncr6b.py > /tmp/L/gc_ncr6b.out 2>&1; rc=$?; echo "gc ncr6b rc $rc $SECONDS"
for r in gc_main gc_ncr6d gc_ncr6b; do echo "== $r"; grep -a "^GRAD\|^FP8DIAG\|Error" /tmp/L/$r.out | cut -c1-400 | head -60; done
if [ $rc = 0 ]; then
A="--preset reference --steps 60 --eval_every 60 --seed 0 --save_model false --log_dir /tmp/L"
TORCHINDUCTOR_CACHE_DIR=/tmp/ind_n6b TORCH_LOGS=recompiles timeout 230 python3 exp/train_plm_ncr6b.py $A --run_id ncr6b > /tmp/L/ncr6b.out 2>&1; echo "ncr6b rc $? $SECONDS"
grep -a "^RESULT\|warm-up\|step:10/\|step:60/\|Recompiling\|Error" /tmp/L/ncr6b.out | cut -c1-300
fi
mkdir -p /tmp/L/code && grep -l "fp8_mm" /tmp/ind_g*/*/*.py /tmp/ind_n6b/*/*.py 2>/dev/null | head -20 | while read f; do cp $f /tmp/L/code/$(basename $(dirname $(dirname $f)))_$(basename $f); done
cd /tmp/L && tar czf $OUT/call54.tgz *.out *.txt code; ls $OUT
