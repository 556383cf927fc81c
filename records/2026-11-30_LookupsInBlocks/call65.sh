# GPU call 65 (session 16, nvidia-h200): doc_attention kernels, this checkout against main (bench_attn.py);
# torch.profiler over 3 steady steps of the reference training step, this checkout and main (profile_step.py).
export PYTHONUNBUFFERED=1
mkdir -p data && tar xzf .carry/ref.tar.gz -C data
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader
python3 -c "import torch, triton; print(torch.__version__, triton.__version__)"
TORCHINDUCTOR_CACHE_DIR=/tmp/ind0 timeout 200 python3 exp/bench_attn.py 2>&1 | tee $OUT/call65_bench.out | grep -v "^ *$" | cut -c1-600
mkdir -p /tmp/m && cp exp/train_plm_main.py /tmp/m/train_plm.py && cp -r data /tmp/m/ && mkdir -p /tmp/m/exp && cp exp/profile_step.py /tmp/m/exp/
TORCHINDUCTOR_CACHE_DIR=/tmp/ind1 timeout 170 python3 exp/profile_step.py --preset reference --steps 18 --eval_every 0 --save_model false --log_dir $OUT/logs --run_id profile_new > $OUT/call65_profile_new.out 2>&1
grep -E "PROFILE|GAPS|RESULT|KERNEL" $OUT/call65_profile_new.out | head -30 | cut -c1-250
cd /tmp/m && TORCHINDUCTOR_CACHE_DIR=/tmp/ind2 timeout 170 python3 exp/profile_step.py --preset reference --steps 18 --eval_every 0 --save_model false --log_dir $OUT/logs --run_id profile_main > $OUT/call65_profile_main.out 2>&1
grep -E "PROFILE|GAPS|RESULT|KERNEL" $OUT/call65_profile_main.out | head -30 | cut -c1-250
