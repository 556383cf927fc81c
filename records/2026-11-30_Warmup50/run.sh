# GPU call 4 (nvidia-h200-x2): speedrun preset with a 50-step warm-up, seeds 0-5 (3 per GPU), whole schedules;
# then on GPU path smoke + timings: probe benchmark (with baselines) on seed 1, generate + score on seed 0.
export PYTHONUNBUFFERED=1 TORCHINDUCTOR_CACHE_DIR=/tmp/inductor NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
mkdir -p data /tmp/L /tmp/ck && tar xzf .carry/ref.tar.gz -C data
R="python3 train_plm.py --out_dir /tmp/ck --stop_at_target false --warmup_steps 50 --log_dir /tmp/L"
left() { echo $(( 580 - SECONDS )); }
(export CUDA_VISIBLE_DEVICES=0; for s in 0 2 4; do timeout $(left) $R --seed $s --run_id wu50_seed$s > /tmp/L/o$s.out 2>&1; echo "seed $s done $SECONDS"; done
 timeout $(left) python3 train_plm.py generate /tmp/ck/wu50_seed0 --num 100 --length 120 --seed 0 --out /tmp/L/gen_mlm_seed0.fasta > /tmp/L/gen.out 2>&1; echo "gen done $SECONDS"
 /usr/bin/time -f "score wall %e s" timeout $(left) python3 train_plm.py score /tmp/ck/wu50_seed0 /tmp/L/gen_mlm_seed0.fasta > /tmp/L/score.out 2>&1; echo "score done $SECONDS") &
(export CUDA_VISIBLE_DEVICES=1; for s in 1 3 5; do timeout $(left) $R --seed $s --run_id wu50_seed$s > /tmp/L/o$s.out 2>&1; echo "seed $s done $SECONDS"; done
 /usr/bin/time -f "probe wall %e s" timeout $(left) python3 -u train_plm.py probe /tmp/ck/wu50_seed1 --out /tmp/L/probe_seed1.json > /tmp/L/probe.out 2>&1; echo "probe done $SECONDS") &
wait
cd /tmp/L && tar czf $OUT/call4.tar.gz . ; cd - > /dev/null
grep -h "RESULT\|reached\|warm-up" /tmp/L/*.txt | grep -v "^ \|log(" | cut -c1-600
grep -h "step:20/\|step:30/\|step:60/\|step:120/\|step:300/" /tmp/L/*.txt | grep val_loss | cut -c1-60
tail -3 /tmp/L/*.out | cut -c1-300
tail -25 /tmp/L/probe.out
