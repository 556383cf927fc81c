# GPU call 104 (session 21): the README's benchmark command on this code (the MFU denominator as the fastest of 20 products).
export PYTHONUNBUFFERED=1
mkdir -p data /tmp/L && tar xJf .carry/ref.tar.xz -C data
nvidia-smi --query-gpu=index,serial,pci.bus_id,clocks.max.sm --format=csv,noheader
sha256sum train_plm.py
TORCHINDUCTOR_CACHE_DIR=/tmp/ind_ref TORCH_LOGS=recompiles timeout 400 python3 train_plm.py --preset reference --log_dir /tmp/L --run_id reference_200steps > /tmp/L/reference_200steps.out 2>&1
echo "recompiles: $(grep -ac Recompiling /tmp/L/reference_200steps.out)"
grep -a "peak\|warm-up\|^RESULT\|Error" /tmp/L/reference_200steps.out | cut -c1-900
cp /tmp/L/reference_200steps.out /tmp/L/reference_200steps.txt $OUT/
