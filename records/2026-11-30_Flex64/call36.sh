# GPU call 36 (nvidia-h200): exp/train_plm_m64.py (main + FLEX_BLOCK 64 + KernelChoices: bwd 32/64/64/32, persistent
# rows <= 2048), 60 reference steps, against main (A then B, cold caches); then the slice bench of more bwd tiles.
export PYTHONUNBUFFERED=1
mkdir -p data /tmp/L && tar xzf .carry/ref.tar.gz -C data
python3 -c "from torch._inductor.template_heuristics.triton import FlexBwDConfig; import torch; print('IMPORT ok', torch.__version__)"
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader
A="--preset reference --steps 60 --eval_every 60 --seed 0 --save_model false"
TORCHINDUCTOR_CACHE_DIR=/tmp/ind_m64 TORCH_LOGS=recompiles timeout 210 python3 exp/train_plm_m64.py $A --run_id m64b_fp8 --log_dir /tmp/L > /tmp/L/m64b_fp8.out 2>&1; echo "rc $? $SECONDS"
grep -a "RESULT\|warm-up\|Error\|error\|Recompil" /tmp/L/m64b_fp8.out | tail -6 | cut -c1-700
TORCHINDUCTOR_CACHE_DIR=/tmp/ind_main timeout 200 python3 train_plm.py $A --run_id mainb_fp8 --log_dir /tmp/L > /tmp/L/mainb_fp8.out 2>&1; echo "rc $? $SECONDS"
grep -a "RESULT\|warm-up" /tmp/L/mainb_fp8.out | tail -3 | cut -c1-700
T=$(( 570 - SECONDS )); [ $T -gt 40 ] && TORCHINDUCTOR_CACHE_DIR=/tmp/ind TORCHINDUCTOR_FORCE_DISABLE_CACHES=1 timeout $T python3 exp/bench_m64.py /tmp/L m64_32 m64_32s4 m64_32s2 m64_32w8 m64_16 m64_3264 > /tmp/L/m64.out 2> /tmp/L/m64.err; echo "rc $? $SECONDS"
grep -a "^VARIANT" /tmp/L/m64.out | cut -c1-300
cd /tmp/L && tar czf $OUT/call36.tgz *.out *.err *.txt *_kernels.txt *.json 2>/dev/null; ls $OUT
