# GPU call 112 (session 22): two more seeds of SpeedrunFP8, with that folder's frozen train_plm.py (--fp8 true).
export PYTHONUNBUFFERED=1 TORCHINDUCTOR_CACHE_DIR=/tmp/ind_sr
mkdir -p data && tar xJf .carry/ref.tar.xz -C data
nvidia-smi --query-gpu=index,serial,pci.bus_id,clocks.max.sm --format=csv,noheader
for s in $SEEDS; do
  timeout 140 python3 records/2026-12-01_SpeedrunFP8/train_plm.py --stop_at_target false --seed $s --save_model false --log_dir $OUT --fp8 true --run_id sr_fp8_seed$s > $OUT/sr_fp8_seed$s.out 2>&1
  echo "seed $s rc $?"; grep -E "^RESULT|warm-up" $OUT/sr_fp8_seed$s.out | cut -c1-400
done
