# GPU call 127 (session 26): speed track seed 0, whole schedule, on main 431d212 (train_plm.py = 1afcbb1's), for
# a record with call 126's seeds 1 and 2; then a profile of main's step for GPU idle gaps (exp/profile_step.py).
export PYTHONUNBUFFERED=1
mkdir -p data /tmp/L && tar xJf .carry/ref.tar.xz -C data
nvidia-smi --query-gpu=index,serial,pci.bus_id,clocks.max.sm --format=csv,noheader
sha256sum train_plm.py
TORCHINDUCTOR_CACHE_DIR=/tmp/ind TORCH_LOGS=recompiles timeout 260 python3 train_plm.py --seed 0 --stop_at_target false --save_model false --log_dir /tmp/L --run_id speedrun_full_seed0 > /tmp/L/speedrun_full_seed0.out 2>&1
echo "seed 0 rc=$? recompiles: $(grep -ac Recompiling /tmp/L/speedrun_full_seed0.out)"
grep -a "warm-up\|^RESULT\|target\|Error" /tmp/L/speedrun_full_seed0.out | cut -c1-900
cp /tmp/L/speedrun_full_seed0.out /tmp/L/speedrun_full_seed0.txt $OUT/
TORCHINDUCTOR_CACHE_DIR=/tmp/ind2 timeout 220 python3 exp/profile_step.py --preset reference --steps 18 --eval_every 0 --save_model false --log_dir /tmp/L --run_id profile_main > $OUT/profile_main.out 2>&1
echo "profile rc=$?"
grep -E "PROFILE|RESULT|GAPS|^GAP|MEMORY" $OUT/profile_main.out | cut -c1-600
