# GPU call 122 (session 24): sparse prediction, the speed-track command for seeds 5-8 (seed 3 of call 121 missed 2.70).
export PYTHONUNBUFFERED=1
mkdir -p data /tmp/L && [ -d data/reference ] || tar xJf .carry/ref.tar.xz -C data
nvidia-smi --query-gpu=index,serial,pci.bus_id,clocks.max.sm --format=csv,noheader
sha256sum train_plm.py
for s in 5 6 7 8; do
  TORCHINDUCTOR_CACHE_DIR=/tmp/ind_sr timeout 140 python3 train_plm.py --seed $s --save_model false --log_dir /tmp/L \
    --run_id speedrun_seed$s > /tmp/L/speedrun_seed$s.out 2>&1
  echo "seed $s rc=$?"
  grep -a "warm-up\|^RESULT\|target val_loss\|Error" /tmp/L/speedrun_seed$s.out | cut -c1-700
  cp /tmp/L/speedrun_seed$s.out $OUT/
done
