set -x
mkdir -p data && tar xJf .carry/ref.tar.xz -C data
nvidia-smi --query-gpu=name,serial --format=csv
export TORCHINDUCTOR_CACHE_DIR=/tmp/ind_cold
TORCH_LOGS=recompiles python train_plm.py --preset reference --run_id reference_200steps --log_dir $OUT > $OUT/reference_200steps.out 2>&1
grep -c Recompiling $OUT/reference_200steps.out; grep "warm-up\|peak" $OUT/reference_200steps.out; tail -1 $OUT/reference_200steps.out | cut -c1-2000
python train_plm.py --preset reference --fp8 false --steps 30 --eval_every 0 --save_model false --run_id reference_bf16_30steps --log_dir $OUT > $OUT/reference_bf16_30steps.out 2>&1
tail -1 $OUT/reference_bf16_30steps.out | cut -c1-2000
