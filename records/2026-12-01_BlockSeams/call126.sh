# GPU call 126 (session 25): the speed track's whole schedule on this code, seeds 0-2
# (python train_plm.py --stop_at_target false --seed S --save_model false), one H200.
export PYTHONUNBUFFERED=1
mkdir -p data /tmp/L && tar xJf .carry/ref.tar.xz -C data
nvidia-smi --query-gpu=index,serial,pci.bus_id,clocks.max.sm --format=csv,noheader
sha256sum train_plm.py
for s in 0 1 2; do
  TORCHINDUCTOR_CACHE_DIR=/tmp/ind_sr timeout 125 python3 train_plm.py --stop_at_target false --seed $s --save_model false \
    --log_dir /tmp/L --run_id speedrun_full_seed$s > /tmp/L/speedrun_full_seed$s.out 2>&1
  echo "seed $s rc=$?"
  grep -a "warm-up\|^RESULT\|target\|Error" /tmp/L/speedrun_full_seed$s.out | grep -v "^config" | cut -c1-600
  cp /tmp/L/speedrun_full_seed$s.out /tmp/L/speedrun_full_seed$s.txt $OUT/
done
