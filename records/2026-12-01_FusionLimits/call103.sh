# GPU call 103 (session 21): the spread of the MFU denominator: the fastest of 20 products against the median of 10 (before) and after 1 s of load.
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=index,serial,pci.bus_id,clocks.max.sm --format=csv,noheader
timeout 120 python3 exp/peak_check.py 2>&1 | grep -v Warn | tee $OUT/call103_peak_check.out | tail -3
