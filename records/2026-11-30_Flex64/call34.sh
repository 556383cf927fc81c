# GPU call 34 (nvidia-h200), for the next session: 64-token mask blocks through inductor's documented choices
# handler (bench_m64.py), and the FP8 slice variants again (f8fd vs f8fd_p2k: the persistent-reduction limit,
# which the same handler could raise in train_plm.py). Caches off: the handler is not in inductor's cache key.
export PYTHONUNBUFFERED=1 TORCHINDUCTOR_CACHE_DIR=/tmp/ind TORCHINDUCTOR_FORCE_DISABLE_CACHES=1
mkdir -p data /tmp/L && tar xzf .carry/ref.tar.gz -C data
timeout 330 python3 exp/bench_m64.py /tmp/L > /tmp/L/m64.out 2> /tmp/L/m64.err; echo "rc $? $SECONDS"
grep -a "^VARIANT" /tmp/L/m64.out | cut -c1-300; tail -3 /tmp/L/m64.err | cut -c1-300
timeout $(( 560 - SECONDS )) python3 exp/bench_fp8.py /tmp/L trainer f8fd f8fd_p2k > /tmp/L/fp8.out 2> /tmp/L/fp8.err; echo "rc $? $SECONDS"
grep -a "^VARIANT" /tmp/L/fp8.out | cut -c1-300
cd /tmp/L && tar czf $OUT/call34.tgz m64.out m64.err fp8.out *_kernels.txt *.json 2>/dev/null
