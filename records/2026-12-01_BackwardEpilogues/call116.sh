# GPU call 116 (session 23): as call 114, plus cos/sin computed in the kernels and the raw rows loaded before the loop; qkv_prep's backward in the epilogues of doc_attention's backward kernels, against
# main's chain (attention backward, then _qkv_prep_bwd) on real reference micro-batches.
export PYTHONUNBUFFERED=1
mkdir -p data && tar xJf .carry/one.tar.xz -C data
nvidia-smi --query-gpu=index,serial,pci.bus_id,clocks.max.sm --format=csv,noheader
timeout 420 python3 exp/attn_qkv_bwd.py 2>&1 | grep -v Warn | tee $OUT/call116_attn_qkv_bwd.out | grep -E "VS_MAIN|TIME|FAILED|Error|error" | cut -c1-600
