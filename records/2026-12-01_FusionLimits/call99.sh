# GPU call 99 (session 21): doc_attention's kernels as persistent programs against train_plm's.
export PYTHONUNBUFFERED=1
mkdir -p data && tar xJf .carry/ref.tar.xz -C data
nvidia-smi --query-gpu=index,serial,pci.bus_id,clocks.max.sm --format=csv,noheader
timeout 400 python3 exp/attn_persistent.py 2>&1 | grep -v Warn | tee $OUT/call99_attn_persistent.out | grep -E "BITS|FAILED|TIME|Error|error" | cut -c1-300
