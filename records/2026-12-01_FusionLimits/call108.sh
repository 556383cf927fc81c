# GPU call 108 (session 22): weight-gradient products on a second stream beside the backward's other kernels.
export PYTHONUNBUFFERED=1
mkdir -p data && tar xJf .carry/ref.tar.xz -C data
nvidia-smi --query-gpu=index,serial,pci.bus_id,clocks.max.sm --format=csv,noheader
timeout 300 python3 exp/overlap.py 2>&1 | grep -v Warn | tee $OUT/call108_overlap.out | grep -E "PAIR|CHAIN|Error|error" | cut -c1-400
