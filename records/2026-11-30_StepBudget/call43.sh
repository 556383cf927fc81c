# GPU call 43 (nvidia-h200), session 12: (1) main and (2) the ReLU² + FP8 cast kernel as an opaque custom_op
# (exp/relu2_custom.patch on main 8b2280b), each 60 reference steps from a cold compile cache, optimizer steps
# timed (phase_time.py): does the custom_op keep compile + first step under 90 s, unlike the triton_op (104 s)?
# (3) main profiled over 3 steady steps (profile_step.py, kernels only, GPU idle), on (1)'s warm cache.
export PYTHONUNBUFFERED=1
mkdir -p data /tmp/L && tar xzf .carry/ref.tar.gz -C data
A="--preset reference --steps 60 --eval_every 60 --seed 0 --save_model false --log_dir /tmp/L"
TORCHINDUCTOR_CACHE_DIR=/tmp/ind_main timeout 215 python3 exp/phase_time.py train_plm.py $A --run_id main > /tmp/L/main.out 2>&1; echo "main rc $? $SECONDS"
TORCHINDUCTOR_CACHE_DIR=/tmp/ind_custom timeout 215 python3 exp/phase_time.py exp/train_plm_relu2_custom.py $A --run_id custom > /tmp/L/custom.out 2>&1; echo "custom rc $? $SECONDS"
for r in main custom; do echo "== $r"; grep -a "^PHASE\|^RESULT\|warm-up\|step:60/\|recompil" /tmp/L/$r.out | cut -c1-420; done
T=$(( 580 - SECONDS )); TORCHINDUCTOR_CACHE_DIR=/tmp/ind_main timeout $T python3 exp/profile_step.py --preset reference --steps 18 --eval_every 0 --save_model false --log_dir /tmp/L --run_id prof > /tmp/L/prof.out 2>&1; echo "prof rc $? $SECONDS"
grep -a "^PROFILE\|^GAPS\|warm-up" /tmp/L/prof.out | cut -c1-400
cd /tmp/L && tar czf $OUT/call43.tgz *.out *.txt; ls $OUT
