# GPU call 69 (session 17, nvidia-h200): where the memsets come from; inductor settings that need no timing
# (aggressive_fusion, combo_kernels) against main, 30-step runs, one GPU, each with a cold cache.
export PYTHONUNBUFFERED=1
mkdir -p data /tmp/L && tar xzf .carry/ref.tar.gz -C data
nvidia-smi --query-gpu=index,serial,pci.bus_id --format=csv,noheader
python3 -c "import torch, triton; print(torch.__version__, triton.__version__)"
TORCHINDUCTOR_CACHE_DIR=/tmp/ind_ms timeout 150 python3 exp/memset_sources.py --preset reference --steps 16 --eval_every 0 --save_model false --log_dir /tmp/L --run_id memset > /tmp/L/memset.out 2>&1
grep -a "KERNELS_PER\|MEMSET\|Error" /tmp/L/memset.out | cut -c1-330
run() {  # name json
  INDUCTOR_EXTRA="$2" TORCHINDUCTOR_CACHE_DIR=/tmp/ind_$1 timeout 150 python3 exp/cfg_train.py --preset reference --steps 30 --eval_every 0 --save_model false --log_dir /tmp/L --run_id $1 > /tmp/L/$1.out 2>&1
  echo "== $1 $SECONDS"; grep -a "Error\|INDUCTOR_EXTRA" /tmp/L/$1.out | head -5 | cut -c1-250
  grep -a "^RESULT" /tmp/L/$1.out | python3 -c "
import json,sys
for l in sys.stdin: d=json.loads(l[7:]); print({k:d.get(k) for k in ('tokens_per_s','step_time_ms_median','mfu','first_step_s','weights_sha256')})"
}
run base1 '{}'
run aggr '{"aggressive_fusion": true}'
run combo '{"combo_kernels": true}'
run base2 '{}'
cd /tmp/L && tar czf $OUT/call69.tgz *.out *.txt; ls $OUT
