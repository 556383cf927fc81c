# GPU call 40 (nvidia-h200; the x2 was not lent): the ReLU² + FP8 cast kernel and the Muon change
# (records/2026-11-30_MuonBaddbmm). One after the other on one GPU: the README's throughput command (reference
# preset, 200 steps) on this code; main (67161f0) for 60 reference steps, optimizer steps timed; the kernel check.
export PYTHONUNBUFFERED=1
mkdir -p data /tmp/L && tar xzf .carry/ref.tar.gz -C data
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader
TORCHINDUCTOR_CACHE_DIR=/tmp/ind0 TORCH_LOGS=recompiles timeout 400 python3 train_plm.py --preset reference > /tmp/L/ref200_stdout.out 2>&1; echo "ref rc $? $SECONDS"
grep -a "warm-up\|RESULT\|Recompil\|step:200" /tmp/L/ref200_stdout.out | cut -c1-900
cp logs/*.txt /tmp/L/ 2>/dev/null
A="--preset reference --steps 60 --eval_every 60 --seed 0 --save_model false --log_dir /tmp/L"
T=$(( 575 - SECONDS )); [ $T -gt 230 ] && T=230
TORCHINDUCTOR_CACHE_DIR=/tmp/ind_m timeout $T python3 exp/phase_time.py exp/train_plm_main.py $A --run_id pair_main > /tmp/L/pair_main.out 2>&1; echo "main rc $? $SECONDS"
grep -a "^PHASE\|warm-up\|step:60/\|RESULT" /tmp/L/pair_main.out | cut -c1-400
T=$(( 585 - SECONDS )); TORCHINDUCTOR_CACHE_DIR=/tmp/ind_c timeout $T python3 exp/gpu_relu2check.py > /tmp/L/relu2check.out 2>&1; echo "check rc $? $SECONDS"
grep -a "^RELU2" /tmp/L/relu2check.out; tail -2 /tmp/L/relu2check.out | cut -c1-300
cd /tmp/L && tar czf $OUT/call40.tgz *.out *.txt; ls -la $OUT
