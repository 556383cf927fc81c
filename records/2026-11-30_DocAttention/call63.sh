# GPU call 63 (session 15, nvidia-h200): tile sweep of main's (unfused) attention backward kernels.
export PYTHONUNBUFFERED=1
mkdir -p data && tar xzf .carry/ref.tar.gz -C data
timeout 200 python3 exp/sweep_unfused.py 2>&1 | tee $OUT/call63_sweep.out | cut -c1-200
