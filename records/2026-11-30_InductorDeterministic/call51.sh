# GPU call 51 (nvidia-h200), session 13: is FP8Linear (an autograd.Function) what breaks nested_compile_region
# on torch 2.11? region_probe with 8,192-token micro-batches (the eager backend materialises the attention
# scores), FP8 on and off; if ncr3 traces with FP8 off, its compile + first step with inductor (bf16, 10 steps).
export PYTHONUNBUFFERED=1
mkdir -p data /tmp/L && tar xzf .carry/ref.tar.gz -C data
timeout 120 python3 exp/region_probe.py exp/train_plm_ncr3.py exp/train_plm_ncr.py -- --tokens_per_micro_batch 8192 --tokens_per_step 65536 > /tmp/L/region.out 2>&1; echo "region rc $? $SECONDS"
grep -a "^REGION exp\|^REGION  " /tmp/L/region.out | cut -c1-300; grep -a "^REGION" /tmp/L/region.out | grep -v "^REGION exp\|^REGION  " | sort | uniq -c | sort -rn | head -3 | cut -c1-200
A="--preset reference --steps 10 --eval_every 10 --seed 0 --save_model false --fp8 false --log_dir /tmp/L"
if grep -aq "ncr3.py fp8 false: ok" /tmp/L/region.out; then
  TORCHINDUCTOR_CACHE_DIR=/tmp/ind_n3 timeout 130 python3 exp/train_plm_ncr3.py $A --run_id ncr3_bf16 > /tmp/L/ncr3_bf16.out 2>&1; echo "ncr3 bf16 rc $? $SECONDS"
  T=$(( 320 - SECONDS )); TORCHINDUCTOR_CACHE_DIR=/tmp/ind_m timeout $T python3 train_plm.py $A --run_id main_bf16 > /tmp/L/main_bf16.out 2>&1; echo "main bf16 rc $? $SECONDS"
  grep -a "warm-up\|step:10/\|Error" /tmp/L/ncr3_bf16.out /tmp/L/main_bf16.out | cut -c1-300
fi
cd /tmp/L && tar czf $OUT/call51.tgz *.out; ls $OUT
