# GPU call 20 (nvidia-h200): the 4-block slice: last against last_sep (q, k, v as three products).
export PYTHONUNBUFFERED=1 TORCHINDUCTOR_CACHE_DIR=/tmp/ind
mkdir -p data /tmp/L && tar xzf .carry/ref.tar.gz -C data
timeout 420 python3 exp/bench_variants.py /tmp/L last last_sep > /tmp/L/variants.out 2> /tmp/L/variants.err
echo "rc $? $SECONDS"
grep -a "^VARIANT" /tmp/L/variants.out
for v in last last_sep; do echo "== $v"; head -24 /tmp/L/${v}_kernels.txt | cut -c1-150; grep -a "Memcpy\|Fill" /tmp/L/${v}_kernels.txt | cut -c1-100; done
tail -3 /tmp/L/variants.err | cut -c1-300
gzip -c /tmp/L/variants.err > $OUT/variants.err.gz; cp /tmp/L/variants.out /tmp/L/*_kernels.txt /tmp/L/variants.json $OUT/ 2>/dev/null
