# GPU call 81 (session 19): torch.profiler over 3 steady steps of main 418c426's reference step (profile_step.py).
export PYTHONUNBUFFERED=1
mkdir -p data /tmp/L && tar xJf .carry/ref.tar.xz -C data
nvidia-smi --query-gpu=index,serial,pci.bus_id,clocks.max.sm --format=csv,noheader
sha256sum train_plm.py
TORCHINDUCTOR_CACHE_DIR=/tmp/ind_prof timeout 200 python3 exp/profile_step.py --preset reference --steps 18 --eval_every 0 --save_model false --log_dir /tmp/L --run_id profile_main > $OUT/call81_profile_main.out 2>&1
grep -E "PROFILE|GAPS|RESULT|MEMORY" $OUT/call81_profile_main.out | cut -c1-400
grep -E "^KERNEL" $OUT/call81_profile_main.out | head -30 | cut -c1-160
cp /tmp/L/profile_main.txt $OUT/
