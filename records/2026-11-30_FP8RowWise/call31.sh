# GPU call 31 (nvidia-h200; nvidia-h200-x2 could not be started): FP8 with bf16 operands (call 29's FP8 ran on
# float32 RMSNorm outputs under autocast: fp32 products and fp32 q, k, v). The reference preset, 60 steps, seed 0:
# --fp8 true (TORCH_LOGS=recompiles), then --fp8 false, one after the other on the one GPU, each from a cold cache.
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0
mkdir -p data /tmp/L && tar xzf .carry/ref.tar.gz -C data
A="--preset reference --steps 60 --eval_every 60 --seed 0 --save_model false --log_dir /tmp/L"
TORCHINDUCTOR_CACHE_DIR=/tmp/ind_fp8 TORCH_LOGS=recompiles timeout 260 python3 train_plm.py $A --fp8 true --run_id fp8 > /tmp/L/o_fp8.out 2>&1; echo "fp8 done $SECONDS"
TORCHINDUCTOR_CACHE_DIR=/tmp/ind_bf16 timeout $(( 470 - SECONDS )) python3 train_plm.py $A --fp8 false --run_id bf16 > /tmp/L/o_bf16.out 2>&1; echo "bf16 done $SECONDS"
cp /tmp/L/*.txt /tmp/L/o_*.out $OUT/ 2>/dev/null
for f in /tmp/L/*.txt; do echo "== $f"; grep -ah "^warm-up\|^measured\|^step:[0-9]*/[0-9]* val_loss" $f | cut -c1-140; grep -ao '"tokens_per_s.*' $f | cut -c1-140; grep -ao '"weights_sha256[^,]*' $f; done
grep -ac "Recompiling" /tmp/L/o_fp8.out
for f in /tmp/L/o_*.out; do echo "== $f"; tail -n 2 $f | cut -c1-250; done
