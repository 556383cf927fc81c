# GPU call 27 (nvidia-h200): FP8 variants on the 4-block slice (bench_fp8.py), then torch.profiler over 3 steady
# steps of the trainer's real reference step (profile_step.py).
export PYTHONUNBUFFERED=1 TORCHINDUCTOR_CACHE_DIR=/tmp/ind
mkdir -p data /tmp/L && tar xzf .carry/ref.tar.gz -C data
timeout 300 python3 exp/bench_fp8.py /tmp/L > /tmp/L/fp8.out 2> /tmp/L/fp8.err
echo "rc $? $SECONDS"
grep -a "^VARIANT" /tmp/L/fp8.out | cut -c1-400
tail -3 /tmp/L/fp8.err | cut -c1-300
for v in trainer f8fd3; do echo "== $v"; head -24 /tmp/L/${v}_kernels.txt | cut -c1-170; done
timeout 230 python3 exp/profile_step.py --preset reference --steps 18 --eval_every 0 --seed 0 --save_model false --log_dir /tmp/L --run_id prof > /tmp/L/profile.out 2>&1
echo "rc $? $SECONDS"
grep -a "^PROFILE\|^KERNEL\|^warm-up\|tokens/s" /tmp/L/profile.out | head -50 | cut -c1-170
cd /tmp/L && tar czf $OUT/call27.tgz fp8.out fp8.err *_kernels.txt fp8_variants.json profile.out 2>/dev/null
