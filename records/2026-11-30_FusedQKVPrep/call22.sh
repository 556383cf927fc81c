# GPU call 22 (nvidia-h200): the fused kernels with one head per program (and ve read in place, no copy):
# accuracy at the reference shapes, then the 4-block slice: last against the trainer (64 / 32 / 128 tokens
# per program).
export PYTHONUNBUFFERED=1 TORCHINDUCTOR_CACHE_DIR=/tmp/ind
mkdir -p data /tmp/L && tar xzf .carry/ref.tar.gz -C data
python3 -c "import triton, torch; print('triton', triton.__version__, 'torch', torch.__version__)"
timeout 120 python3 exp/check_qkv_gpu.py 2>&1 | grep -a "QKVCHECK\|Error\|error" | head -20
timeout 420 python3 exp/bench_variants.py /tmp/L last trainer trainer32 trainer128 > /tmp/L/variants.out 2> /tmp/L/variants.err
echo "rc $? $SECONDS"
grep -a "^VARIANT" /tmp/L/variants.out
for v in last trainer; do echo "== $v"; head -16 /tmp/L/${v}_kernels.txt | cut -c1-150; done
grep -a "qkv_prep" /tmp/L/trainer*_kernels.txt | cut -c1-150
tail -3 /tmp/L/variants.err | cut -c1-300
gzip -c /tmp/L/variants.err > $OUT/variants.err.gz; cp /tmp/L/variants.out /tmp/L/*_kernels.txt /tmp/L/variants.json $OUT/ 2>/dev/null
