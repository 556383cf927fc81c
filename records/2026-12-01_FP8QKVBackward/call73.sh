# GPU call 73 (session 18): QKVProductFP8 check on the reference shape, then 30-step runs of main 8012959 and
# this code in turn on the same GPU.
export PYTHONUNBUFFERED=1
mkdir -p data /tmp/L && tar xJf .carry/ref.tar.xz -C data
nvidia-smi --query-gpu=index,serial,pci.bus_id --format=csv,noheader
timeout 150 python3 exp/check_qkv_fp8.py > /tmp/L/check.out 2>&1; tail -c 6000 /tmp/L/check.out
summary() {
  echo "== $1 $SECONDS recompiles: $(grep -ac Recompiling /tmp/L/$1.out)"; grep -a "Error\|Recompiling" /tmp/L/$1.out | head -6 | cut -c1-250
  grep -a "^RESULT" /tmp/L/$1.out | python3 -c "
import json,sys
for l in sys.stdin: d=json.loads(l[7:]); print({k:d.get(k) for k in ('tokens_per_s','step_time_ms_median','mfu','first_step_s','warmup_s','val_loss','test_loss','weights_sha256')})"
}
run() {  # code run_id
  TORCHINDUCTOR_CACHE_DIR=/tmp/ind_$2 TORCH_LOGS=recompiles timeout 90 python3 $1 --preset reference --steps 30 --eval_every 0 --save_model false --log_dir /tmp/L --run_id $2 > /tmp/L/$2.out 2>&1
  summary $2
}
run train_plm.py new_a
run exp/train_plm_main.py main_a
run train_plm.py new_b
run exp/train_plm_main.py main_b
cd /tmp/L && tar czf $OUT/call73.tgz *.out *.txt; ls $OUT
