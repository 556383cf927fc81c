# GPU call 85 (session 20): whole-model torch.compile(model.forward) against main's regional compilation,
# 30-step runs in turn on one GPU, each from a cold compile cache.
export PYTHONUNBUFFERED=1
mkdir -p data /tmp/L && tar xJf .carry/ref.tar.xz -C data
nvidia-smi --query-gpu=index,serial,pci.bus_id,clocks.max.sm --format=csv,noheader
sha256sum train_plm.py exp/train_plm_whole.py
summary() {
  echo "== $1 $SECONDS recompiles: $(grep -ac Recompiling /tmp/L/$1.out)"; grep -a "Error" /tmp/L/$1.out | head -6 | cut -c1-250
  grep -a "^RESULT" /tmp/L/$1.out | python3 -c "
import json,sys
for l in sys.stdin: d=json.loads(l[7:]); print({k:d.get(k) for k in ('tokens_per_s','step_time_ms_median','mfu','first_step_s','warmup_s','val_loss','test_loss','weights_sha256')})"
}
run() {  # code run_id limit
  [ $SECONDS -lt 420 ] || { echo "skip $2 at $SECONDS s"; return; }
  TORCHINDUCTOR_CACHE_DIR=/tmp/ind_$2 TORCH_LOGS=recompiles timeout $3 python3 $1 --preset reference --steps 30 --eval_every 0 --save_model false --log_dir /tmp/L --run_id $2 > /tmp/L/$2.out 2>&1
  summary $2
}
run exp/train_plm_whole.py whole_a 200
run train_plm.py main_a 100
run exp/train_plm_whole.py whole_b 200
run train_plm.py main_b 100
cd /tmp/L && tar czf $OUT/call85.tgz *.out *.txt; ls $OUT
