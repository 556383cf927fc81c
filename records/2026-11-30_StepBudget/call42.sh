# GPU call 42 (nvidia-h200), session 12: (1) the qkv8 kernel check; (2) 4-block slices (bench_slice.py) of main,
# qkv8 (qkv input gradient FP8, cast inside qkv_prep's backward), wg8 (weight gradients FP8, per-channel scales),
# out8 (attention output product FP8 forward + input gradient), qkv8wg, all8 (all three), and bf16 (--fp8 false);
# (3) each slice's gradients against the bf16 slice's.
export PYTHONUNBUFFERED=1
mkdir -p data /tmp/L && tar xzf .carry/ref.tar.gz -C data
TORCHINDUCTOR_CACHE_DIR=/tmp/ind_q timeout 90 python3 exp/gpu_qkv8check.py > /tmp/L/qkv8check.out 2>&1; echo "qkv8check rc $? $SECONDS"
grep -a "^QKV8" /tmp/L/qkv8check.out; tail -2 /tmp/L/qkv8check.out | cut -c1-300
for v in main:train_plm.py all8:exp/train_plm_all8.py wg8:exp/train_plm_wg8.py qkv8:exp/train_plm_qkv8.py out8:exp/train_plm_out8.py qkv8wg:exp/train_plm_qkv8wg.py bf16:train_plm.py:--fp8:false main2:train_plm.py; do
  n=${v%%:*}; r=${v#*:}; f=${r%%:*}; x=""; [ "$r" != "$f" ] && x=$(echo ${r#*:} | tr ':' ' ')
  [ $SECONDS -gt 520 ] && { echo "skip $n"; continue; }
  TORCHINDUCTOR_CACHE_DIR=/tmp/ind_s$n timeout 80 python3 exp/bench_slice.py $f $n /tmp/L $x > /tmp/L/slice_$n.out 2>&1; echo "$n rc $? $SECONDS"
  grep -a "^SLICE" /tmp/L/slice_$n.out || tail -3 /tmp/L/slice_$n.out | cut -c1-400
done
python3 exp/grad_compare.py /tmp/L bf16 main all8 wg8 qkv8 out8 qkv8wg main2 2>&1 | cut -c1-900
cd /tmp/L && tar czf $OUT/call42.tgz *.out *_kernels.txt; ls $OUT
