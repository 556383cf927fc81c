# GPU call 113 (session 23): doc_attention's backward as one pass over main's dK/dV grid, dQ partials added in
# key-block order under per-tile turn counters; bits and times against main's two passes.
export PYTHONUNBUFFERED=1
mkdir -p data && tar xJf .carry/one.tar.xz -C data
nvidia-smi --query-gpu=index,serial,pci.bus_id,clocks.max.sm --format=csv,noheader
timeout 420 python3 exp/attn_ordered_bwd.py 2>&1 | grep -v Warn | tee $OUT/call113_attn_ordered_bwd.out | grep -E "BITS|TIME|FAILED|Error|error" | cut -c1-400
