# GPU call 105 (session 21, refused: no device time left): doc_attention's kernels with their loops rotated (the next
# tile's products issued before this tile's softmax).
export PYTHONUNBUFFERED=1
mkdir -p data && tar xJf .carry/ref.tar.xz -C data
nvidia-smi --query-gpu=index,serial,pci.bus_id,clocks.max.sm --format=csv,noheader
timeout 400 python3 exp/attn_rotate.py 2>&1 | grep -v Warn | tee $OUT/call105_attn_rotate.out | grep -E "BITS|TIME|Error|error" | cut -c1-300
