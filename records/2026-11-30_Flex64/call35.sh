# GPU call 35 (nvidia-h200): 64-token FlexAttention mask blocks in the trainer (exp/train_plm_m64.py: main +
# FLEX_BLOCK 64 + inductor_choices), 60 reference steps, against main; then the slice bench of the m64 configs.
export PYTHONUNBUFFERED=1
mkdir -p data /tmp/L && tar xzf .carry/ref.tar.gz -C data
python3 -c "import torch; print('HAS', hasattr(torch._inductor.config, 'inductor_choices_class'), torch.__version__)"
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader
A="--preset reference --steps 60 --eval_every 60 --seed 0 --save_model false"
TORCHINDUCTOR_CACHE_DIR=/tmp/ind_m64 timeout 220 python3 exp/train_plm_m64.py $A --run_id m64_fp8 --log_dir /tmp/L > /tmp/L/m64_fp8.out 2>&1; echo "rc $? $SECONDS"
grep -a "RESULT\|warm-up\|Error\|error" /tmp/L/m64_fp8.out | tail -5 | cut -c1-600
TORCHINDUCTOR_CACHE_DIR=/tmp/ind_main timeout 200 python3 train_plm.py $A --run_id main_fp8 --log_dir /tmp/L > /tmp/L/main_fp8.out 2>&1; echo "rc $? $SECONDS"
grep -a "RESULT\|warm-up" /tmp/L/main_fp8.out | tail -3 | cut -c1-600
T=$(( 575 - SECONDS )); [ $T -gt 40 ] && TORCHINDUCTOR_CACHE_DIR=/tmp/ind TORCHINDUCTOR_FORCE_DISABLE_CACHES=1 timeout $T python3 exp/bench_m64.py /tmp/L m64_s3w4 m64_32 m64_s2w4 trainer > /tmp/L/m64.out 2> /tmp/L/m64.err; echo "rc $? $SECONDS"
grep -a "^VARIANT\|HAS_" /tmp/L/m64.out | cut -c1-400
cd /tmp/L && tar czf $OUT/call35.tgz *.out *.err *.txt *_kernels.txt *.json 2>/dev/null; ls $OUT
