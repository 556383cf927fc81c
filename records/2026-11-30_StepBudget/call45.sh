# GPU call 45 (nvidia-h200), session 12: where main's compile + first step goes (torch's per-phase compile times),
# from a cold compile cache; call 44 measured 94.5 s for it (over the 90 s target), call 43 65.2 s.
export PYTHONUNBUFFERED=1
mkdir -p data /tmp/L && tar xzf .carry/ref.tar.gz -C data
nproc; TORCHINDUCTOR_CACHE_DIR=/tmp/ind_ct timeout 175 python3 exp/compile_time.py train_plm.py --preset reference --steps 1 --eval_every 0 --save_model false --log_dir /tmp/L --run_id ct_main > $OUT/ct_main.out 2>&1; echo "ct rc $? $SECONDS"
grep -a "warm-up\|COMPILE import" $OUT/ct_main.out; sed -n '/^COMPILE_TIMES/,$p' $OUT/ct_main.out | cut -c1-200 | head -60
