# GPU call 124 (session 25): block seams + block 0's qkv product on the token table against main 734ccb5:
# 30-step reference runs in turn on one H200, new first; then a profile of the new code (exp/profile_step.py).
export PYTHONUNBUFFERED=1
mkdir -p data /tmp/L && tar xJf .carry/ref.tar.xz -C data
nvidia-smi --query-gpu=index,serial,pci.bus_id,clocks.max.sm --format=csv,noheader
sha256sum train_plm.py exp/train_plm_main.py
for r in c d; do
  for code in new main; do
    f=train_plm.py; [ $code = main ] && f=exp/train_plm_main.py
    TORCHINDUCTOR_CACHE_DIR=/tmp/ind_$code TORCH_LOGS=recompiles timeout 200 python3 $f --preset reference --steps 30 \
      --eval_every 0 --save_model false --log_dir /tmp/L --run_id ${code}_$r > /tmp/L/${code}_$r.out 2>&1
    echo "$code $r rc=$? recompiles: $(grep -ac Recompiling /tmp/L/${code}_$r.out)"
    grep -a "warm-up\|^RESULT\|Error\|error" /tmp/L/${code}_$r.out | cut -c1-700
    cp /tmp/L/${code}_$r.out /tmp/L/${code}_$r.txt $OUT/ 2>/dev/null
  done
done
TORCHINDUCTOR_CACHE_DIR=/tmp/ind_new timeout 200 python3 exp/profile_step.py --preset reference --steps 18 --eval_every 0 --save_model false --log_dir /tmp/L --run_id profile_new > $OUT/profile_new.out 2>&1
grep -E "PROFILE|RESULT" $OUT/profile_new.out | cut -c1-600
grep -E "^KERNEL" $OUT/profile_new.out | head -40 | cut -c1-170
