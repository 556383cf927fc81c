# GPU call 120 (session 24): main 921fe4f's speed-track command on the machine of call 119, for the pair.
export PYTHONUNBUFFERED=1
mkdir -p data /tmp/L && [ -d data/reference ] || tar xJf .carry/ref.tar.xz -C data
nvidia-smi --query-gpu=index,serial,pci.bus_id,clocks.max.sm --format=csv,noheader
sha256sum exp/train_plm_main.py
TORCHINDUCTOR_CACHE_DIR=/tmp/ind_sr_main timeout 230 python3 exp/train_plm_main.py --log_dir /tmp/L --run_id speedrun_main > /tmp/L/speedrun_main.out 2>&1
echo "speedrun main rc=$?"
grep -a "warm-up\|^RESULT\|target\|Error" /tmp/L/speedrun_main.out | cut -c1-900
cp /tmp/L/speedrun_main.out $OUT/
