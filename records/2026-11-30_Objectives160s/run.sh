# GPU call 5 (nvidia-h200-x2): equal-time (480 steps, ~160 s) runs of the speedrun recipe (warm-up 50):
# GPU0: mlm untied (+probes), diffusion; GPU1: mlm tied (+probes), mlm_to_diffusion (240 MLM + 160 widening).
# Then 100 sequences from each diffusion model, scored by the untied MLM model; and 100 valid sequences.
export PYTHONUNBUFFERED=1 TORCHINDUCTOR_CACHE_DIR=/tmp/inductor
mkdir -p data /tmp/L /tmp/ck && tar xzf .carry/ref.tar.gz -C data
R="python3 train_plm.py --out_dir /tmp/ck --log_dir /tmp/L --steps 480 --warmup_steps 50 --target_val_loss 0 --eval_every 120"
left() { echo $(( 585 - SECONDS )); }
gen() { timeout $(left) python3 train_plm.py generate /tmp/ck/$1 --num 100 --length 120 --temperature 1.0 --seed 0 --out /tmp/L/gen_$1.fasta > /tmp/L/gen_$1.out 2>&1; echo "gen $1 done $SECONDS"
  while [ ! -f /tmp/ck/obj_mlm/model.safetensors ] && [ $SECONDS -lt 560 ]; do sleep 2; done
  timeout $(left) python3 train_plm.py score /tmp/ck/obj_mlm /tmp/L/gen_$1.fasta > /tmp/L/score_gen_$1.out 2>&1; echo "score $1 done $SECONDS"; }
(export CUDA_VISIBLE_DEVICES=0
 timeout $(left) $R --probe true --run_id obj_mlm > /tmp/L/o_mlm.out 2>&1; echo "mlm done $SECONDS"
 timeout $(left) $R --objective diffusion --run_id obj_diffusion > /tmp/L/o_diffusion.out 2>&1; echo "diffusion done $SECONDS"
 gen obj_diffusion
 timeout $(left) python3 train_plm.py score /tmp/ck/obj_mlm exp/valid100_ref.fasta > /tmp/L/score_valid100.out 2>&1; echo "valid100 done $SECONDS") &
(export CUDA_VISIBLE_DEVICES=1
 timeout $(left) $R --probe true --tie_embeddings true --save_model false --run_id mlm_tied > /tmp/L/o_tied.out 2>&1; echo "tied done $SECONDS"
 timeout $(left) $R --objective mlm_to_diffusion --mlm_steps 240 --widen_steps 160 --run_id obj_m2d_240_160 > /tmp/L/o_m2d.out 2>&1; echo "m2d done $SECONDS"
 gen obj_m2d_240_160) &
wait
cd /tmp/L && tar czf $OUT/call5.tar.gz . ; cd - > /dev/null
grep -h "RESULT\|warm-up\|probes:" /tmp/L/*.txt | grep -v "^ \|log(" | cut -c1-900
cat /tmp/L/score*.out | cut -c1-400
for f in /tmp/L/*.out; do echo "== $f"; tail -n 2 $f | cut -c1-300; done
