set -x
cd /work/main
P=/tmp/exp2/train_plm.py
C="--log_dir /tmp/exp2/logs --out_dir /tmp/exp2/ck"
python $P $C --objective mlm --run_id cpu_mlm > /tmp/exp2/mlm.out 2>&1
python $P $C --objective diffusion --run_id cpu_diffusion > /tmp/exp2/diffusion.out 2>&1
python $P $C --objective mlm_to_diffusion --mlm_steps 100 --widen_steps 50 --run_id cpu_mlm_to_diffusion > /tmp/exp2/m2d.out 2>&1
for m in diffusion mlm_to_diffusion mlm; do
  /usr/bin/time -f "generate wall %e s" python $P generate /tmp/exp2/ck/cpu_$m --num 100 --length 120 --temperature 1.0 --seed 0 --out /tmp/exp2/gen_$m.fasta
  python $P score /tmp/exp2/ck/cpu_mlm /tmp/exp2/gen_$m.fasta > /tmp/exp2/score_gen_$m.out 2>&1
done
python $P score /tmp/exp2/ck/cpu_mlm /tmp/exp2/valid100.fasta > /tmp/exp2/score_valid100.out 2>&1
/usr/bin/time -f "probe wall %e s" python -u $P probe /tmp/exp2/ck/cpu_mlm --out /tmp/exp2/probe_mlm.json > /tmp/exp2/probe_mlm.out 2>&1
for m in diffusion mlm_to_diffusion; do
  /usr/bin/time -f "probe wall %e s" python -u $P probe /tmp/exp2/ck/cpu_$m --skip_baselines --out /tmp/exp2/probe_$m.json > /tmp/exp2/probe_$m.out 2>&1
done
echo done > /tmp/exp2/DONE
