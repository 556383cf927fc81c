# GPU call 128 (session 26): each micro-batch's forward + backward as one CUDA graph (MicroBatchGraph) against main
# 431d212 (exp/train_plm_main.py): 30-step reference runs in turn on one H200, new first; stop if new fails.
export PYTHONUNBUFFERED=1
mkdir -p data /tmp/L && tar xJf .carry/ref.tar.xz -C data
nvidia-smi --query-gpu=index,serial,pci.bus_id,clocks.max.sm --format=csv,noheader
sha256sum train_plm.py exp/train_plm_main.py
for r in a b; do
  for code in new main; do
    f=train_plm.py; [ $code = main ] && f=exp/train_plm_main.py
    TORCHINDUCTOR_CACHE_DIR=/tmp/ind_$code TORCH_LOGS=recompiles timeout 200 python3 $f --preset reference --steps 30 \
      --eval_every 0 --save_model false --log_dir /tmp/L --run_id ${code}_$r > /tmp/L/${code}_$r.out 2>&1
    rc=$?
    echo "$code $r rc=$rc recompiles: $(grep -ac Recompiling /tmp/L/${code}_$r.out)"
    grep -a "warm-up\|^RESULT\|Error\|error" /tmp/L/${code}_$r.out | cut -c1-700
    cp /tmp/L/${code}_$r.out /tmp/L/${code}_$r.txt $OUT/ 2>/dev/null
    [ $rc = 0 ] || { tail -30 /tmp/L/${code}_$r.out; exit 1; }
  done
done
