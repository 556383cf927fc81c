# GPU call 82 (session 19): document_ids / document_ranges by binary search against main 418c426's scans
# (bench_ranges.py), then 30-step runs of this code and main in turn on the same GPU.
export PYTHONUNBUFFERED=1
mkdir -p data /tmp/L && tar xJf .carry/ref.tar.xz -C data
nvidia-smi --query-gpu=index,serial,pci.bus_id,clocks.max.sm --format=csv,noheader
sha256sum train_plm.py exp/train_plm_main.py
timeout 60 python3 exp/bench_ranges.py 2>&1 | tee /tmp/L/bench_ranges.out | grep -v Warn
summary() {
  echo "== $1 $SECONDS recompiles: $(grep -ac Recompiling /tmp/L/$1.out)"; grep -a "Error" /tmp/L/$1.out | head -6 | cut -c1-250
  grep -a "^RESULT" /tmp/L/$1.out | python3 -c "
import json,sys
for l in sys.stdin: d=json.loads(l[7:]); print({k:d.get(k) for k in ('tokens_per_s','step_time_ms_median','mfu','first_step_s','warmup_s','val_loss','test_loss','weights_sha256')})"
}
run() {  # code run_id
  [ $SECONDS -lt 300 ] || { echo "skip $2 at $SECONDS s"; return; }
  TORCHINDUCTOR_CACHE_DIR=/tmp/ind_$2 TORCH_LOGS=recompiles timeout 90 python3 $1 --preset reference --steps 30 --eval_every 0 --save_model false --log_dir /tmp/L --run_id $2 > /tmp/L/$2.out 2>&1
  summary $2
}
run train_plm.py new_j
run exp/train_plm_main.py main_j
run train_plm.py new_k
run exp/train_plm_main.py main_k
cd /tmp/L && tar czf $OUT/call82.tgz *.out *.txt; ls $OUT
