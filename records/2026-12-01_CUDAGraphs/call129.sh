# GPU call 129 (session 26): GPU clocks, power and throttle reasons sampled every 200 ms (nvidia-smi) during a
# 30-step reference run of the new code (MicroBatchGraph): is the unprofiled step longer than the profiled kernel
# sum because the clocks drop under sustained load?
export PYTHONUNBUFFERED=1
mkdir -p data /tmp/L && tar xJf .carry/ref.tar.xz -C data
nvidia-smi --query-gpu=index,serial,clocks.max.sm,clocks.max.mem,power.limit,power.default_limit,enforced.power.limit --format=csv
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,utilization.gpu,clocks_throttle_reasons.active,clocks_throttle_reasons.sw_power_cap,clocks_throttle_reasons.hw_slowdown,clocks_throttle_reasons.sw_thermal_slowdown --format=csv -lms 200 > $OUT/smi.csv 2>&1 &
SMI=$!
TORCHINDUCTOR_CACHE_DIR=/tmp/ind_new python3 train_plm.py --preset reference --steps 40 --log_every 5 \
  --eval_every 0 --save_model false --log_dir /tmp/L --run_id new_smi > /tmp/L/new_smi.out 2>&1
echo "rc=$?"
kill $SMI
grep -a "warm-up\|^step\|^RESULT" /tmp/L/new_smi.out | cut -c1-300
cp /tmp/L/new_smi.out $OUT/
python3 - <<'PY'
import csv, os
rows = list(csv.reader(open(os.environ["OUT"] + "/smi.csv")))
print(rows[0])
for r in rows[1::10]:
    print(",".join(x.strip() for x in r))
PY
