# GPU call 25 (nvidia-h200-x2): the speedrun preset (stop at val 2.70) at once: HEAD (db430a2) seed 0 on GPU0,
# against call 24's seed 0 of this code; this code seed 1 on GPU1.
export PYTHONUNBUFFERED=1 TORCHINDUCTOR_CACHE_DIR=/tmp/ind
mkdir -p data /tmp/L && tar xzf .carry/ref.tar.gz -C data
(CUDA_VISIBLE_DEVICES=0 timeout 300 python3 exp/train_plm_head.py --save_model false --log_dir /tmp/L --seed 0 --run_id head_speedrun_s0 > /tmp/L/o_head_s0.out 2>&1; echo "head s0 done $SECONDS") &
(CUDA_VISIBLE_DEVICES=1 timeout 300 python3 train_plm.py --save_model false --log_dir /tmp/L --seed 1 --run_id speedrun_s1 > /tmp/L/o_s1.out 2>&1; echo "s1 done $SECONDS") &
wait
cp /tmp/L/*.txt /tmp/L/o_*.out $OUT/ 2>/dev/null
for f in /tmp/L/*.txt; do echo "== $f"; grep -ah "^warm-up\|^step:[0-9]*/[0-9]* val_loss:\|^target" $f | cut -c1-110; grep -ao '"tokens_per_s": [0-9]*\|"time_to_target_s": [0-9.a-z]*' $f | tr '\n' ' '; echo; grep -ao '"weights_sha256[^,]*' $f; done
