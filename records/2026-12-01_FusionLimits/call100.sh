# GPU call 100 (session 21): qkv_prep's backward kernel summing the value-embedding table's gradient itself.
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=index,serial,pci.bus_id,clocks.max.sm --format=csv,noheader
timeout 300 python3 exp/qkv_bwd_ve.py 2>&1 | grep -v Warn | tee $OUT/call100_qkv_bwd_ve.out | grep -E "CHECK|TIME|Error|error" | cut -c1-300
