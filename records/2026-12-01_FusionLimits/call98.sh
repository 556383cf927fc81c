# GPU call 98 (session 21): the MLP backward kernel with its epilogue input loaded before the product.
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=index,serial,pci.bus_id,clocks.max.sm --format=csv,noheader
timeout 200 python3 exp/bench_mlp_bwd.py 2>&1 | grep -v Warn | tee $OUT/call98_bench_mlp_bwd.out | grep -E "SAME|TIME|Error|error" | cut -c1-300
