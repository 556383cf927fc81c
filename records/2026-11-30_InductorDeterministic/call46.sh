# GPU call 46 (nvidia-h200), prepared in session 12 for the next session. (1) bits_probe.py: this machine's
# identity and digests (Muon's newton_schulz, baddbmm, a compiled 4-block slice); compare with other calls'.
# Its counters line shows timed choices (pad_mm) if any. (2) main against exp/train_plm_ncr.py (blocks as torch.compiler.nested_compile_region: on CPU inductor,
# compile + first fwd+bwd of the reference model 99.4 -> 41.0 s), 60 reference steps each, cold caches,
# optimizer steps timed.
export PYTHONUNBUFFERED=1
mkdir -p data /tmp/L && tar xzf .carry/ref.tar.gz -C data
TORCHINDUCTOR_CACHE_DIR=/tmp/ind_bits timeout 120 python3 exp/bits_probe.py train_plm.py > /tmp/L/bits.out 2>&1; echo "bits rc $? $SECONDS"
grep -a "^MACHINE\|^BITS" /tmp/L/bits.out | cut -c1-300
A="--preset reference --steps 60 --eval_every 60 --seed 0 --save_model false --log_dir /tmp/L"
TORCHINDUCTOR_CACHE_DIR=/tmp/ind_main timeout 215 python3 exp/phase_time.py train_plm.py $A --run_id main > /tmp/L/main.out 2>&1; echo "main rc $? $SECONDS"
TORCHINDUCTOR_CACHE_DIR=/tmp/ind_ncr TORCH_LOGS=recompiles timeout 215 python3 exp/phase_time.py exp/train_plm_ncr.py $A --run_id ncr > /tmp/L/ncr.out 2>&1; echo "ncr rc $? $SECONDS"
for r in main ncr; do echo "== $r"; grep -a "^PHASE\|^RESULT\|warm-up\|step:10/\|step:60/\|Recompiling\|Error" /tmp/L/$r.out | cut -c1-420; done
cd /tmp/L && tar czf $OUT/call46.tgz *.out *.txt; ls $OUT
