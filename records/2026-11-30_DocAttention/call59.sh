# GPU call 59 (session 15, nvidia-h200): exp/doc_attn.py's document-masked attention kernels (fused QK-norm/RoPE/VE
# backward) against main's qkv_prep + FlexAttention on a real reference micro-batch; tile sweep.
export PYTHONUNBUFFERED=1
mkdir -p data && tar xzf .carry/ref.tar.gz -C data
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader
TORCHINDUCTOR_CACHE_DIR=/tmp/ind0 timeout 540 python3 exp/bench_doc_attn.py 2>&1 | tee $OUT/call59_bench.out | grep -v "^ *$" | cut -c1-400
