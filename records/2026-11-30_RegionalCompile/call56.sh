# GPU call 56 (session 14): does the H200 hold its clock under the trainer's load? nvidia-smi samples SM clock,
# power and throttle reasons every 250 ms while exp/peak_probe.py (burst and sustained 8192^3 products) and
# then 60 reference steps of main run.
export PYTHONUNBUFFERED=1
mkdir -p data /tmp/L && tar xzf .carry/ref.tar.gz -C data
nvidia-smi --query-gpu=serial,pci.bus_id,clocks.max.sm,clocks.max.mem,power.limit,enforced.power.limit --format=csv
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,utilization.gpu,clocks_throttle_reasons.active --format=csv,noheader -lms 250 > /tmp/L/smi.csv &
SMI=$!
date +%s.%N > /tmp/L/t_probe_start; timeout 40 python3 exp/peak_probe.py train_plm.py > /tmp/L/peak.out 2>&1; date +%s.%N > /tmp/L/t_probe_end
sleep 5
date +%s.%N > /tmp/L/t_run_start
TORCHINDUCTOR_CACHE_DIR=/tmp/ind_m timeout 230 python3 train_plm.py --preset reference --steps 60 --eval_every 60 --seed 0 --save_model false --log_dir /tmp/L --run_id clocks > /tmp/L/clocks.out 2>&1; echo "run rc $? $SECONDS"
date +%s.%N > /tmp/L/t_run_end
kill $SMI
grep -a PEAK /tmp/L/peak.out; grep -a "^RESULT\|warm-up\|measured\|step:.*tokens/s" /tmp/L/clocks.out | cut -c1-200
cd /tmp/L && tar czf $OUT/call56.tgz *.out *.txt smi.csv t_*; ls $OUT
