# GPU call 49 (nvidia-h200-x2), session 13, main 'Inductor's deterministic mode as a torch.compile option'.
# GPU0: the README's throughput command from a cold compile cache (the record's log). GPU1, started once GPU0's
# compile is done (compile is CPU-bound): the 60-step seed-0 run of call 48's det variant (same training code),
# to compare bits with call 48's machine.
export PYTHONUNBUFFERED=1
mkdir -p data /tmp/L && tar xzf .carry/ref.tar.gz -C data
nvidia-smi --query-gpu=index,serial,pci.bus_id --format=csv,noheader
CUDA_VISIBLE_DEVICES=0 TORCHINDUCTOR_CACHE_DIR=/tmp/ind_ref TORCH_LOGS=recompiles timeout 560 python3 train_plm.py --preset reference --log_dir /tmp/L --run_id reference_200steps > /tmp/L/reference_stdout.out 2>&1 &
P=$!
for i in $(seq 1 150); do sleep 2; grep -aq "warm-up" /tmp/L/reference_stdout.out && break; done; echo "GPU0 training started at $SECONDS s"
A="--preset reference --steps 60 --eval_every 60 --seed 0 --save_model false --log_dir /tmp/L"
CUDA_VISIBLE_DEVICES=1 TORCHINDUCTOR_CACHE_DIR=/tmp/ind_det timeout 400 python3 train_plm.py $A --run_id det60_gpu1 > /tmp/L/det60_stdout.out 2>&1; echo "det60 rc $? $SECONDS"
wait $P; echo "reference rc $? $SECONDS"
grep -a "warm-up\|step:10/\|step:60/\|step:200/\|^RESULT\|test_loss\|ecompil" /tmp/L/reference_stdout.out /tmp/L/det60_stdout.out | cut -c1-700
cd /tmp/L && tar czf $OUT/call49.tgz *.out *.txt; ls $OUT
