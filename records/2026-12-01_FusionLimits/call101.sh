# GPU call 101 (session 21): main's reference step with cuBLAS / cuBLASLt workspaces of 128 MiB (default 32 MiB on
# Hopper) against the default, 30-step runs in turn A B B A on one GPU.
export PYTHONUNBUFFERED=1
mkdir -p data /tmp/L && tar xJf .carry/ref.tar.xz -C data
nvidia-smi --query-gpu=index,serial,pci.bus_id,clocks.max.sm --format=csv,noheader
sha256sum train_plm.py
summary() {
  echo "== $1 $SECONDS recompiles: $(grep -ac Recompiling /tmp/L/$1.out)"; grep -a "Error" /tmp/L/$1.out | head -6 | cut -c1-250
  grep -a "^RESULT" /tmp/L/$1.out | python3 -c "
import json,sys
for l in sys.stdin: d=json.loads(l[7:]); print({k:d.get(k) for k in ('tokens_per_s','step_time_ms_median','mfu','first_step_s','warmup_s','weights_sha256')})"
}
run() {  # run_id [env...]
  id=$1; shift
  env "$@" TORCHINDUCTOR_CACHE_DIR=/tmp/ind_$id TORCH_LOGS=recompiles timeout 150 python3 train_plm.py --preset reference --steps 30 --eval_every 0 --save_model false --log_dir /tmp/L --run_id $id > /tmp/L/$id.out 2>&1
  summary $id
}
WS="CUBLAS_WORKSPACE_CONFIG=:131072:1 CUBLASLT_WORKSPACE_SIZE=131072"
run main_a
run ws128_a $WS
run ws128_b $WS
run main_b
cd /tmp/L && cp *.out *.txt $OUT/
