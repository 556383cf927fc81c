# GPU call 94 (session 21): the fused FP8 qkv product + qkv_prep epilogue kernel against cuBLAS + qkv_prep; a profile of main.
export PYTHONUNBUFFERED=1
mkdir -p data /tmp/L && tar xJf .carry/ref.tar.xz -C data
nvidia-smi --query-gpu=index,serial,pci.bus_id,clocks.max.sm --format=csv,noheader
timeout 240 python3 exp/qkv_fp8.py 2>&1 | grep -v Warn | tee $OUT/call94_qkv_fp8.out | grep -E "ERR|VS_PREP|TIME|Error|error" | cut -c1-300
TORCHINDUCTOR_CACHE_DIR=/tmp/ind_prof timeout 220 python3 exp/profile_step.py --preset reference --steps 18 --eval_every 0 --save_model false --log_dir /tmp/L --run_id profile_main > $OUT/call94_profile_main.out 2>&1
grep -E "PROFILE|GAPS|RESULT" $OUT/call94_profile_main.out | cut -c1-600
grep -E "^KERNEL" $OUT/call94_profile_main.out | head -24 | cut -c1-160
