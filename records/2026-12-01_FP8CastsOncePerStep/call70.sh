# GPU call 70 (session 17, nvidia-h200): FP8 weight copies cast once per optimizer step (fp8_casts) against main
# 036a4ee, and a variant whose weight gradients come out of the product in fp32 (torch.mm out_dtype);
# 40-step runs in turn on one GPU, cold caches; then a profile of the new step.
export PYTHONUNBUFFERED=1
mkdir -p data /tmp/L && tar xzf .carry/ref.tar.gz -C data
nvidia-smi --query-gpu=index,serial,pci.bus_id --format=csv,noheader
run() {  # code run_id
  TORCHINDUCTOR_CACHE_DIR=/tmp/ind_$2 TORCH_LOGS=recompiles timeout 140 python3 $1 --preset reference --steps 40 --eval_every 0 --save_model false --log_dir /tmp/L --run_id $2 > /tmp/L/$2.out 2>&1
  echo "== $2 $SECONDS recompiles: $(grep -ac Recompiling /tmp/L/$2.out)"; grep -a "Error" /tmp/L/$2.out | head -5 | cut -c1-300
  grep -a "^RESULT" /tmp/L/$2.out | python3 -c "
import json,sys
for l in sys.stdin: d=json.loads(l[7:]); print({k:d.get(k) for k in ('tokens_per_s','step_time_ms_median','mfu','first_step_s','warmup_s','val_loss','weights_sha256')})"
}
run exp/train_plm_main.py main_a
run train_plm.py new_a
run exp/train_plm_outdtype.py outdtype_a
run train_plm.py new_b
run exp/train_plm_main.py main_b
TORCHINDUCTOR_CACHE_DIR=/tmp/ind_new_a timeout 100 python3 exp/profile_step.py --preset reference --steps 18 --eval_every 0 --save_model false --log_dir /tmp/L --run_id profile_new > /tmp/L/profile_new.out 2>&1
grep -aE "PROFILE|GAPS|Error" /tmp/L/profile_new.out | cut -c1-300
grep -a "KERNEL" /tmp/L/profile_new.out | head -30 | cut -c1-160
cd /tmp/L && tar czf $OUT/call70.tgz *.out *.txt; ls $OUT
