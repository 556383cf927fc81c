# GPU call 71 (session 17, nvidia-h200): the README's command on this code (fp8_casts + fp32 weight gradients
# from the product), cold cache; then 30-step runs of main 036a4ee and this code in turn on the same GPU.
export PYTHONUNBUFFERED=1
mkdir -p data /tmp/L && tar xzf .carry/ref.tar.gz -C data
nvidia-smi --query-gpu=index,serial,pci.bus_id --format=csv,noheader
summary() {
  echo "== $1 $SECONDS recompiles: $(grep -ac Recompiling /tmp/L/$1.out)"; grep -a "Error\|Recompiling" /tmp/L/$1.out | head -6 | cut -c1-250
  grep -a "^RESULT" /tmp/L/$1.out | python3 -c "
import json,sys
for l in sys.stdin: d=json.loads(l[7:]); print({k:d.get(k) for k in ('tokens_per_s','step_time_ms_median','mfu','first_step_s','warmup_s','val_loss','test_loss','weights_sha256')})"
}
TORCHINDUCTOR_CACHE_DIR=/tmp/ind_readme TORCH_LOGS=recompiles timeout 300 python3 train_plm.py --preset reference --log_dir /tmp/L --run_id reference_200steps > /tmp/L/reference_200steps.out 2>&1
summary reference_200steps
run() {  # code run_id
  TORCHINDUCTOR_CACHE_DIR=/tmp/ind_$2 TORCH_LOGS=recompiles timeout 85 python3 $1 --preset reference --steps 30 --eval_every 0 --save_model false --log_dir /tmp/L --run_id $2 > /tmp/L/$2.out 2>&1
  summary $2
}
run exp/train_plm_main.py main_c
run train_plm.py new_c
run exp/train_plm_main.py main_d
run train_plm.py new_d
cd /tmp/L && tar czf $OUT/call71.tgz *.out *.txt; ls $OUT
