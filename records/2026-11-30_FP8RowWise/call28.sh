# GPU call 28 (nvidia-h200): FP8 variants on the 4-block slice (bench_fp8.py) with the input-gradient layouts
# fixed, and inductor's persistent-reduction limit raised for the MLP's 1,536-wide rows (_p2k). Caches off:
# the _p2k variants must compile afresh.
export PYTHONUNBUFFERED=1 TORCHINDUCTOR_CACHE_DIR=/tmp/ind TORCHINDUCTOR_FORCE_DISABLE_CACHES=1
mkdir -p data /tmp/L && tar xzf .carry/ref.tar.gz -C data
timeout 420 python3 exp/bench_fp8.py /tmp/L > /tmp/L/fp8.out 2> /tmp/L/fp8.err
echo "rc $? $SECONDS"
grep -a "^VARIANT" /tmp/L/fp8.out | cut -c1-400
tail -3 /tmp/L/fp8.err | cut -c1-300
for v in f8fd3 f8fd3_p2k; do echo "== $v"; head -32 /tmp/L/${v}_kernels.txt | cut -c1-170; done
cd /tmp/L && tar czf $OUT/call28.tgz fp8.out fp8.err *_kernels.txt fp8_variants.json 2>/dev/null
