# GPU call 38 (nvidia-h200), for the next session: (1) where the current reference step goes (FP8 + 64-token
# blocks): kernels, GPU idle gaps, and the eager aten ops that launch device work (Memcpy DtoD was 14 ms per step
# in call 30; idle 43 ms); (2) mask blocks below 64 tokens and separate query/key block sizes (bench_m32.py).
export PYTHONUNBUFFERED=1 TORCHINDUCTOR_CACHE_DIR=/tmp/ind
mkdir -p data /tmp/L && tar xzf .carry/ref.tar.gz -C data
A="--preset reference --steps 18 --eval_every 0 --seed 0 --save_model false --log_dir /tmp/L"
timeout 300 python3 exp/profile_step.py $A --run_id prof_now > /tmp/L/prof_now.out 2>&1; echo "prof rc $? $SECONDS"
grep -a "^PROFILE\|^GAPS\|^MEMORY\|tokens/s" /tmp/L/prof_now.out | cut -c1-220; grep -a "^KERNEL" /tmp/L/prof_now.out | head -25 | cut -c1-150
grep -a "^OP" /tmp/L/prof_now.out | head -25 | cut -c1-220
PYTHONPATH=. timeout 90 python3 exp/gpu_flexcheck.py > /tmp/L/flexcheck.out 2>&1; echo "flexcheck rc $?"; tail -4 /tmp/L/flexcheck.out
T=$(( 570 - SECONDS )); TORCHINDUCTOR_FORCE_DISABLE_CACHES=1 timeout $T python3 exp/bench_m32.py /tmp/L > /tmp/L/m32.out 2> /tmp/L/m32.err; echo "m32 rc $? $SECONDS"
grep -a "^VARIANT" /tmp/L/m32.out | cut -c1-300
cd /tmp/L && tar czf $OUT/call38.tgz *.out *.err *_kernels.txt *.json 2>/dev/null; ls $OUT
