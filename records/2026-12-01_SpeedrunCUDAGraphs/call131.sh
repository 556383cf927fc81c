# GPU call 131 (session 26): MicroBatchGraph code: the speed track's whole schedule, seeds 1 and 2 (with call 130's
# seed 0: a record of three seeds).
export PYTHONUNBUFFERED=1
mkdir -p data /tmp/L && tar xJf .carry/ref.tar.xz -C data
nvidia-smi --query-gpu=index,serial,pci.bus_id,clocks.max.sm --format=csv,noheader
sha256sum train_plm.py
for s in 1 2; do
  TORCHINDUCTOR_CACHE_DIR=/tmp/ind_sr TORCH_LOGS=recompiles timeout 230 python3 train_plm.py --seed $s --stop_at_target false --save_model false --log_dir /tmp/L --run_id speedrun_full_seed$s > /tmp/L/speedrun_full_seed$s.out 2>&1
  echo "seed $s rc=$? recompiles: $(grep -ac Recompiling /tmp/L/speedrun_full_seed$s.out)"
  grep -a "warm-up\|^RESULT\|target val\|Error" /tmp/L/speedrun_full_seed$s.out | cut -c1-1200
  cp /tmp/L/speedrun_full_seed$s.out /tmp/L/speedrun_full_seed$s.txt $OUT/
done
