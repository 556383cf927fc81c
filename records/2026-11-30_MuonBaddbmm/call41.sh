# GPU call 41 (nvidia-h200, the session's last 250 s): compile + first step of this code (records/2026-11-30_MuonBaddbmm),
# again as the first process on a fresh machine from a cold cache (call 40: 104.0 s), stopped after the warm-up line.
export PYTHONUNBUFFERED=1
mkdir -p data && tar xzf .carry/ref.tar.gz -C data
TORCHINDUCTOR_CACHE_DIR=/tmp/ind0 timeout 125 python3 train_plm.py --preset reference --steps 2 --eval_every 0 --save_model false > $OUT/call41_stdout.out 2>&1; echo "rc $? $SECONDS"
grep -a "warm-up" $OUT/call41_stdout.out
