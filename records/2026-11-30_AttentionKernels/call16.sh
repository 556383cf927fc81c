# GPU call 16 (nvidia-h200-x2), branch grouped-ns: FlexAttention kernel options. Sweep forward options (GPU0) and
# backward options (GPU1) on a real micro-batch, the best pair against the defaults, then a 60-step reference A/B
# at once: GPU0 the defaults (train_plm.py), GPU1 the best pair (exp/train_plm_opt.py).
export PYTHONUNBUFFERED=1 TORCHINDUCTOR_CACHE_DIR=/tmp/ind NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
mkdir -p data /tmp/L && tar xzf .carry/ref.tar.gz -C data
(CUDA_VISIBLE_DEVICES=0 timeout 130 python3 exp/flex_sweep.py fwd /tmp/L/fwd.json > /tmp/L/sweep_fwd.out 2>&1) &
(CUDA_VISIBLE_DEVICES=1 timeout 130 python3 exp/flex_sweep.py bwd /tmp/L/bwd.json > /tmp/L/sweep_bwd.out 2>&1) &
wait; echo "sweeps done $SECONDS"
CUDA_VISIBLE_DEVICES=0 timeout 60 python3 exp/flex_sweep.py pair /tmp/L/pair.json /tmp/L/fwd.json /tmp/L/bwd.json > /tmp/L/sweep_pair.out 2>&1; echo "pair done $SECONDS"
python3 exp/patch_opts.py /tmp/L/pair.json && cp exp/train_plm_opt.py /tmp/L/
A="--preset reference --steps 60 --eval_every 30 --seed 0 --save_model false --log_dir /tmp/L"
(CUDA_VISIBLE_DEVICES=0 timeout $(( 560 - SECONDS )) python3 train_plm.py $A --run_id default_1gpu > /tmp/L/o_default.out 2>&1; echo "default done $SECONDS") &
(CUDA_VISIBLE_DEVICES=1 TORCH_LOGS=recompiles timeout $(( 560 - SECONDS )) python3 exp/train_plm_opt.py $A --run_id opts_1gpu > /tmp/L/o_opts.out 2>&1; echo "opts done $SECONDS") &
wait
cd /tmp/L && tar czf $OUT/call16.tar.gz . ; cd - > /dev/null
grep -ah "^FLEX\|^BEST" /tmp/L/sweep_*.out | cut -c1-330
for f in /tmp/L/*.txt; do echo "== $f"; grep -ah "^warm-up\|^step:[0-9]*/[0-9]* val_loss" $f | cut -c1-110; grep -ao '"tokens_per_s.*' $f | cut -c1-200; done
for f in /tmp/L/o_*.out; do echo "== $f"; tail -n 1 $f | cut -c1-150; done
