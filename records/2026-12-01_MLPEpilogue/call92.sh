# GPU call 92 (session 20): MLPEpilogue. The GPU check of MLPFP8 and its kernel, then 30-step runs of this code
# and main 667b9cf in turn on one GPU, then the README's benchmark command on this code.
export PYTHONUNBUFFERED=1
mkdir -p data /tmp/L && tar xJf .carry/ref.tar.xz -C data
nvidia-smi --query-gpu=index,serial,pci.bus_id,clocks.max.sm --format=csv,noheader
sha256sum train_plm.py exp/train_plm_main.py
timeout 60 python3 exp/check_mlp_gpu.py 2>&1 | grep -v Warn | tee /tmp/L/check_mlp_gpu.out | tail -5
summary() {
  echo "== $1 $SECONDS recompiles: $(grep -ac Recompiling /tmp/L/$1.out)"; grep -a "Error" /tmp/L/$1.out | head -6 | cut -c1-250
  grep -a "^RESULT" /tmp/L/$1.out | python3 -c "
import json,sys
for l in sys.stdin: d=json.loads(l[7:]); print({k:d.get(k) for k in ('tokens_per_s','step_time_ms_median','mfu','first_step_s','warmup_s','val_loss','test_loss','weights_sha256')})"
}
run() {  # code run_id
  TORCHINDUCTOR_CACHE_DIR=/tmp/ind_$2 TORCH_LOGS=recompiles timeout 120 python3 $1 --preset reference --steps 30 --eval_every 0 --save_model false --log_dir /tmp/L --run_id $2 > /tmp/L/$2.out 2>&1
  summary $2
}
run train_plm.py new_a
grep -q "^RESULT" /tmp/L/new_a.out || { tail -30 /tmp/L/new_a.out; cd /tmp/L && tar czf $OUT/call92.tgz *.out *.txt; exit 1; }
run exp/train_plm_main.py main_a
TORCHINDUCTOR_CACHE_DIR=/tmp/ind_ref TORCH_LOGS=recompiles timeout 330 python3 train_plm.py --preset reference --log_dir /tmp/L --run_id reference_200steps > /tmp/L/reference_200steps.out 2>&1
summary reference_200steps
cd /tmp/L && tar czf $OUT/call92.tgz *.out *.txt; ls $OUT
