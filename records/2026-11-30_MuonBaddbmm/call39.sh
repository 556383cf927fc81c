# GPU call 39 (nvidia-h200): (1) main against the Muon change (baddbmm Newton-Schulz, foreach momentum), 60 reference
# steps each on one GPU, optimizer steps timed with CUDA events; (2) 128-token query blocks on the slice.
export PYTHONUNBUFFERED=1
mkdir -p data /tmp/L && tar xzf .carry/ref.tar.gz -C data
A="--preset reference --steps 60 --eval_every 60 --seed 0 --save_model false --log_dir /tmp/L"
TORCHINDUCTOR_CACHE_DIR=/tmp/ind_main timeout 220 python3 exp/phase_time.py exp/train_plm_main.py $A --run_id main > /tmp/L/main.out 2>&1; echo "main rc $? $SECONDS"
TORCHINDUCTOR_CACHE_DIR=/tmp/ind_new timeout 220 python3 exp/phase_time.py train_plm.py $A --run_id muon > /tmp/L/muon.out 2>&1; echo "muon rc $? $SECONDS"
for r in main muon; do echo "== $r"; grep -a "^PHASE\|^RESULT\|warm-up\|step:60/" /tmp/L/$r.out | cut -c1-300; done
T=$(( 560 - SECONDS )); TORCHINDUCTOR_CACHE_DIR=/tmp/ind_b TORCHINDUCTOR_FORCE_DISABLE_CACHES=1 timeout $T python3 exp/bench_m32.py /tmp/L m64 q128k64_f q128k64_a q128k64_b m64_bw8 q64k128 > /tmp/L/m32.out 2> /tmp/L/m32.err; echo "m32 rc $? $SECONDS"
grep -a "^VARIANT" /tmp/L/m32.out | cut -c1-300
cd /tmp/L && tar czf $OUT/call39.tgz *.out *.err *_kernels.txt *.json *.txt */*.txt 2>/dev/null; ls $OUT
