# GPU call 117 (session 23): the weight-gradient products as one mm against an explicit split over K (bmm + sum).
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=index,serial,pci.bus_id,clocks.max.sm --format=csv,noheader
timeout 300 python3 exp/wgrad_split.py 2>&1 | grep -v Warn | tee $OUT/call117_wgrad_split.out | cut -c1-300
