# GPU call 97 (session 21): the fused FP8 qkv product + qkv_prep epilogue kernel, branch-free epilogue, flattened loop, the epilogue loads before the product, against cuBLAS + qkv_prep.
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=index,serial,pci.bus_id,clocks.max.sm --format=csv,noheader
timeout 300 python3 exp/qkv_fp8.py 2>&1 | grep -v Warn | tee $OUT/call97_qkv_fp8.out | grep -E "ERR|VS_PREP|TIME|Error|error" | cut -c1-300
