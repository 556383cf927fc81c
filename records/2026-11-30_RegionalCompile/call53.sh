# GPU call 53 (session 14): nested_compile_region with the FP8 product as a custom op (exp/train_plm_ncr6.py)
# on torch 2.11. (1) GPU gradients, compiled vs eager, 4 blocks, main and ncr6. (2) 60 reference steps each,
# cold caches, same GPU: ncr6 then main (compile + first step, median step, weights_sha256).
export PYTHONUNBUFFERED=1
mkdir -p data /tmp/L && tar xzf .carry/ref.tar.gz -C data
nvidia-smi --query-gpu=serial,pci.bus_id --format=csv,noheader
TORCHINDUCTOR_CACHE_DIR=/tmp/ind_gc timeout 140 python3 exp/gradcheck_gpu.py 4 train_plm.py exp/train_plm_ncr6.py > /tmp/L/gradcheck.out 2>&1; echo "gradcheck rc $? $SECONDS"
grep -a "^GRAD\|Error" /tmp/L/gradcheck.out | cut -c1-600
A="--preset reference --steps 60 --eval_every 60 --seed 0 --save_model false --log_dir /tmp/L"
TORCHINDUCTOR_CACHE_DIR=/tmp/ind_n6 TORCH_LOGS=recompiles timeout 215 python3 exp/train_plm_ncr6.py $A --run_id ncr6 > /tmp/L/ncr6.out 2>&1; echo "ncr6 rc $? $SECONDS"
TORCHINDUCTOR_CACHE_DIR=/tmp/ind_main TORCH_LOGS=recompiles timeout 215 python3 train_plm.py $A --run_id main > /tmp/L/main.out 2>&1; echo "main rc $? $SECONDS"
for r in ncr6 main; do echo "== $r"; grep -a "^RESULT\|warm-up\|step:10/\|step:60/\|Recompiling\|Error\|weights_sha" /tmp/L/$r.out | cut -c1-300; done
cd /tmp/L && tar czf $OUT/call53.tgz *.out *.txt; ls $OUT
