# GPU call 44 (nvidia-h200), session 12: (1) 4-block slices of main and "sub" (the attention residual as x - -y:
# the same bits, outside inductor's add(mm) -> addmm pattern, whose cuBLAS call first copies the residual);
# (2) the README's throughput command on main (8b2280b) from a cold compile cache.
export PYTHONUNBUFFERED=1
mkdir -p data /tmp/L && tar xzf .carry/ref.tar.gz -C data
for v in main:train_plm.py sub:exp/train_plm_sub.py; do
  n=${v%%:*}; f=${v#*:}
  TORCHINDUCTOR_CACHE_DIR=/tmp/ind_s$n timeout 80 python3 exp/bench_slice.py $f $n /tmp/L > /tmp/L/slice_$n.out 2>&1; echo "$n rc $? $SECONDS"
  grep -a "^SLICE" /tmp/L/slice_$n.out || tail -3 /tmp/L/slice_$n.out | cut -c1-400
done
T=$(( 590 - SECONDS )); TORCHINDUCTOR_CACHE_DIR=/tmp/ind_ref TORCH_LOGS=recompiles timeout $T python3 train_plm.py --preset reference --log_dir /tmp/L --run_id reference_200steps > /tmp/L/reference_stdout.out 2>&1; echo "reference rc $? $SECONDS"
grep -a "warm-up\|step:200/\|^RESULT\|test_loss\|ecompil" /tmp/L/reference_stdout.out | cut -c1-600
cd /tmp/L && tar czf $OUT/call44.tgz *.out *.txt *_kernels.txt; ls $OUT
