# GPU call 18 (nvidia-h200): issue 3 candidates on a 4-block slice of the reference model, one real micro-batch,
# forward + backward ms: 64-token mask blocks (two tile sets), FP8 row-wise (qkv + MLP-in; all four products).
export PYTHONUNBUFFERED=1 TORCHINDUCTOR_CACHE_DIR=/tmp/ind
mkdir -p data /tmp/L && tar xzf .carry/ref.tar.gz -C data
nvidia-smi --query-gpu=name,clocks.sm,power.draw,temperature.gpu --format=csv
timeout 420 python3 exp/bench_variants.py /tmp/L base m64a m64b fp8in fp8all > /tmp/L/variants.out 2> /tmp/L/variants.err
echo "rc $? $SECONDS"
grep -a "^VARIANT" /tmp/L/variants.out
head -40 /tmp/L/base_kernels.txt
grep -a "memcpy\|copy_\|\.clone\|empty_strided" /tmp/L/variants.err | grep -v "^#" | sort | uniq -c | sort -rn | head -20
tail -5 /tmp/L/variants.err | cut -c1-300
gzip -c /tmp/L/variants.err > $OUT/variants.err.gz; cp /tmp/L/variants.out /tmp/L/base_kernels.txt /tmp/L/variants.json $OUT/ 2>/dev/null
