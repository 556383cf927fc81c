# GPU call 52 (nvidia-h200), session 13: with FP8 off dynamo traced the regions (call 51; the eager backend
# cannot run them on torch 2.11). Compile + first step with inductor, bf16, 10 steps: ncr3 (regions; based
# on 407ab5c) then main, cold caches.
export PYTHONUNBUFFERED=1
mkdir -p data /tmp/L && tar xzf .carry/ref.tar.gz -C data
A="--preset reference --steps 10 --eval_every 10 --seed 0 --save_model false --fp8 false --log_dir /tmp/L"
TORCHINDUCTOR_CACHE_DIR=/tmp/ind_n3 TORCH_LOGS=recompiles timeout 120 python3 exp/train_plm_ncr3.py $A --run_id ncr3_bf16 > /tmp/L/ncr3_bf16.out 2>&1; echo "ncr3 bf16 rc $? $SECONDS"
TORCHINDUCTOR_CACHE_DIR=/tmp/ind_m timeout 105 python3 train_plm.py $A --run_id main_bf16 > /tmp/L/main_bf16.out 2>&1; echo "main bf16 rc $? $SECONDS"
grep -a "warm-up\|step:10/\|Error\|Recompiling" /tmp/L/ncr3_bf16.out /tmp/L/main_bf16.out | cut -c1-300
cd /tmp/L && tar czf $OUT/call52.tgz *.out *.txt; ls $OUT
