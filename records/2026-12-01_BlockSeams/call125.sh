# GPU call 125 (session 25): block seams + block 0's qkv product on the token table, on the GPU:
# the README's benchmark command (reference preset, 200 steps, cold compile cache), then the speed-track command
# (seed 0, and seed 3, whose train loss spiked at step 50 in SparsePrediction).
export PYTHONUNBUFFERED=1
mkdir -p data /tmp/L && tar xJf .carry/ref.tar.xz -C data
nvidia-smi --query-gpu=index,serial,pci.bus_id,clocks.max.sm --format=csv,noheader
sha256sum train_plm.py
TORCHINDUCTOR_CACHE_DIR=/tmp/ind_ref TORCH_LOGS=recompiles timeout 330 python3 train_plm.py --preset reference --log_dir /tmp/L --run_id reference_200steps > /tmp/L/reference_200steps.out 2>&1
echo "reference rc=$? recompiles: $(grep -ac Recompiling /tmp/L/reference_200steps.out)"
grep -a "peak\|warm-up\|^RESULT\|Error" /tmp/L/reference_200steps.out | cut -c1-900
cp /tmp/L/reference_200steps.out /tmp/L/reference_200steps.txt $OUT/
for s in 0 3; do
  TORCHINDUCTOR_CACHE_DIR=/tmp/ind_sr timeout 150 python3 train_plm.py --seed $s --log_dir /tmp/L --run_id speedrun_seed$s > /tmp/L/speedrun_seed$s.out 2>&1
  echo "speedrun seed $s rc=$?"
  grep -a "warm-up\|^RESULT\|target\|Error" /tmp/L/speedrun_seed$s.out | cut -c1-900
  cp /tmp/L/speedrun_seed$s.out /tmp/L/speedrun_seed$s.txt $OUT/
done
