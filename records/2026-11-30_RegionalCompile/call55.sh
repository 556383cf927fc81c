# GPU call 55 (session 14, nvidia-h200-x2): the reference preset with a 50-step warm-up (the speedrun preset's
# fix for its loss spikes), seeds 0 and 1, one per GPU, the README command otherwise; then the MFU denominator's
# spread (exp/peak_probe.py) on each GPU.
export PYTHONUNBUFFERED=1
mkdir -p data /tmp/L && tar xzf .carry/ref.tar.gz -C data
nvidia-smi --query-gpu=index,serial,pci.bus_id --format=csv,noheader
A="--preset reference --warmup_steps 50 --save_model false --log_dir /tmp/L"
CUDA_VISIBLE_DEVICES=0 TORCHINDUCTOR_CACHE_DIR=/tmp/ind0 TORCH_LOGS=recompiles timeout 560 python3 train_plm.py $A --seed 0 --run_id wu50_s0 > /tmp/L/wu50_s0.out 2>&1 &
sleep 75
CUDA_VISIBLE_DEVICES=1 TORCHINDUCTOR_CACHE_DIR=/tmp/ind1 TORCH_LOGS=recompiles timeout 480 python3 train_plm.py $A --seed 1 --run_id wu50_s1 > /tmp/L/wu50_s1.out 2>&1 &
wait
echo "runs done $SECONDS"
for g in 0 1; do CUDA_VISIBLE_DEVICES=$g timeout 30 python3 exp/peak_probe.py train_plm.py > /tmp/L/peak_gpu$g.out 2>&1; done
for r in wu50_s0 wu50_s1; do echo "== $r"; grep -a "^RESULT\|warm-up\|val_loss\|Recompiling\|Error" /tmp/L/$r.out | cut -c1-260; done
grep -a PEAK /tmp/L/peak_gpu*.out
cd /tmp/L && tar czf $OUT/call55.tgz *.out *.txt; ls $OUT
