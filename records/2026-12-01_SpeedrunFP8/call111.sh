# GPU call 111 (session 22): the speedrun preset with --fp8 true, whole fixed schedule, seeds $SEEDS, one H200.
# another on one H200 (the first from a cold compile cache).
export PYTHONUNBUFFERED=1 TORCHINDUCTOR_CACHE_DIR=/tmp/ind_sr
mkdir -p data && tar xJf .carry/ref.tar.xz -C data
nvidia-smi --query-gpu=index,serial,pci.bus_id,clocks.max.sm --format=csv,noheader
for s in $SEEDS; do
  timeout 200 python3 train_plm.py --stop_at_target false --seed $s --save_model false --log_dir $OUT --fp8 true --run_id sr_fp8_seed$s > $OUT/sr_fp8_seed$s.out 2>&1
  echo "seed $s rc $?"; grep -E "^RESULT|warm-up" $OUT/sr_fp8_seed$s.out | cut -c1-600
done
