# GPU call 109 (session 22): the speedrun preset's whole fixed schedule on the current code, seeds $SEEDS, one after
# another on one H200 (the first from a cold compile cache).
export PYTHONUNBUFFERED=1 TORCHINDUCTOR_CACHE_DIR=/tmp/ind_sr
mkdir -p data && tar xJf .carry/ref.tar.xz -C data
nvidia-smi --query-gpu=index,serial,pci.bus_id,clocks.max.sm --format=csv,noheader
for s in $SEEDS; do
  timeout 200 python3 train_plm.py --stop_at_target false --seed $s --save_model false --log_dir $OUT --run_id sr_seed$s > $OUT/sr_seed$s.out 2>&1
  echo "seed $s rc $?"; grep -E "^RESULT|warm-up|time_to_target" $OUT/sr_seed$s.out | cut -c1-600
done
