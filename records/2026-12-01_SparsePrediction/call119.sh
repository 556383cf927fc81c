# GPU call 119 (session 24): sparse prediction on the GPU:
# the README's benchmark command (reference preset, 200 steps, cold compile cache), then the speed-track command.
export PYTHONUNBUFFERED=1
mkdir -p data /tmp/L && tar xJf .carry/ref.tar.xz -C data
nvidia-smi --query-gpu=index,serial,pci.bus_id,clocks.max.sm --format=csv,noheader
sha256sum train_plm.py
TORCHINDUCTOR_CACHE_DIR=/tmp/ind_ref TORCH_LOGS=recompiles timeout 330 python3 train_plm.py --preset reference --log_dir /tmp/L --run_id reference_200steps > /tmp/L/reference_200steps.out 2>&1
echo "reference rc=$? recompiles: $(grep -ac Recompiling /tmp/L/reference_200steps.out)"
grep -a "peak\|warm-up\|^RESULT\|Error" /tmp/L/reference_200steps.out | cut -c1-900
cp /tmp/L/reference_200steps.out /tmp/L/reference_200steps.txt $OUT/
TORCHINDUCTOR_CACHE_DIR=/tmp/ind_sr timeout 230 python3 train_plm.py --log_dir /tmp/L --run_id speedrun_default > /tmp/L/speedrun_default.out 2>&1
echo "speedrun rc=$?"
grep -a "warm-up\|^RESULT\|target\|Error" /tmp/L/speedrun_default.out | cut -c1-900
cp /tmp/L/speedrun_default.out /tmp/L/speedrun_default.txt $OUT/
