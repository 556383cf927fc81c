# GPU call 130 (session 26): MicroBatchGraph code: the README's benchmark command (reference preset, 200 steps, cold
# compile cache), then the speed track's whole schedule, seed 0 (call 127 ran main 431d212's: weights 7601cfe8f1919804).
export PYTHONUNBUFFERED=1
mkdir -p data /tmp/L && tar xJf .carry/ref.tar.xz -C data
nvidia-smi --query-gpu=index,serial,pci.bus_id,clocks.max.sm --format=csv,noheader
sha256sum train_plm.py
TORCHINDUCTOR_CACHE_DIR=/tmp/ind_ref TORCH_LOGS=recompiles timeout 330 python3 train_plm.py --preset reference --log_dir /tmp/L --run_id reference_200steps > /tmp/L/reference_200steps.out 2>&1
echo "reference rc=$? recompiles: $(grep -ac Recompiling /tmp/L/reference_200steps.out)"
grep -a "peak\|warm-up\|^RESULT\|Error" /tmp/L/reference_200steps.out | cut -c1-1200
cp /tmp/L/reference_200steps.out /tmp/L/reference_200steps.txt $OUT/
TORCHINDUCTOR_CACHE_DIR=/tmp/ind_sr TORCH_LOGS=recompiles timeout 230 python3 train_plm.py --seed 0 --stop_at_target false --save_model false --log_dir /tmp/L --run_id speedrun_full_seed0 > /tmp/L/speedrun_full_seed0.out 2>&1
echo "seed 0 rc=$? recompiles: $(grep -ac Recompiling /tmp/L/speedrun_full_seed0.out)"
grep -a "warm-up\|^RESULT\|target\|Error" /tmp/L/speedrun_full_seed0.out | cut -c1-1200
cp /tmp/L/speedrun_full_seed0.out /tmp/L/speedrun_full_seed0.txt $OUT/
