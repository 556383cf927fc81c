# GPU call 106 (session 22): doc_attention's backward as one fused pass of five products per tile pair, one
# program per (head, region), regions longest first; against main's dQ + dK/dV passes.
export PYTHONUNBUFFERED=1
mkdir -p data && tar xJf .carry/ref.tar.xz -C data
nvidia-smi --query-gpu=index,serial,pci.bus_id,clocks.max.sm --format=csv,noheader
timeout 400 python3 exp/attn_fused_bwd.py 2>&1 | grep -v Warn | tee $OUT/call106_attn_fused_bwd.out | grep -E "REGIONS|BITS|TIME|FAILED|Error|error" | cut -c1-400
