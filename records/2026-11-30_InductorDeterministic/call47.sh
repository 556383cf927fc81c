# GPU call 47 (session 13). (1) bits_probe: where pad_mm's timed choices come from on torch 2.11 (call 46 counted
# 5 with inductor's deterministic mode on). (2) exp/train_plm_ncr2.py (blocks as two nested_compile_regions
# around FlexAttention; ncr with flex inside failed on torch 2.11: KeyError example_value) against main,
# 60 reference steps each, cold caches.
export PYTHONUNBUFFERED=1
mkdir -p data /tmp/L && tar xzf .carry/ref.tar.gz -C data
TORCHINDUCTOR_CACHE_DIR=/tmp/ind_bits timeout 100 python3 exp/bits_probe.py train_plm.py > /tmp/L/bits.out 2>&1; echo "bits rc $? $SECONDS"
grep -a "^MACHINE\|^BITS" /tmp/L/bits.out | cut -c1-600
A="--preset reference --steps 60 --eval_every 60 --seed 0 --save_model false --log_dir /tmp/L"
TORCHINDUCTOR_CACHE_DIR=/tmp/ind_ncr2 TORCH_LOGS=recompiles timeout 215 python3 exp/phase_time.py exp/train_plm_ncr2.py $A --run_id ncr2 > /tmp/L/ncr2.out 2>&1; rc=$?; echo "ncr2 rc $rc $SECONDS"
grep -a "Error" /tmp/L/ncr2.out | tail -5 | cut -c1-400
if [ $rc = 0 ]; then TORCHINDUCTOR_CACHE_DIR=/tmp/ind_main timeout 215 python3 exp/phase_time.py train_plm.py $A --run_id main > /tmp/L/main.out 2>&1; echo "main rc $? $SECONDS"; fi
for r in ncr2 main; do echo "== $r"; grep -a "^PHASE\|^RESULT\|warm-up\|step:10/\|step:60/\|Recompiling" /tmp/L/$r.out | cut -c1-300; done
cd /tmp/L && tar czf $OUT/call47.tgz *.out *.txt; ls $OUT
