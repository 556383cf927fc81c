set -x
mkdir -p data && tar xJf .carry/ref.tar.xz -C data
nvidia-smi --query-gpu=name,serial --format=csv
export TORCHINDUCTOR_CACHE_DIR=/tmp/ind
for s in 3 4 5; do
  python train_plm.py --seed $s --stop_at_target false --save_model false --run_id speedrun_seed$s --log_dir $OUT > $OUT/speedrun_seed$s.out 2>&1
  grep "target val_loss" $OUT/speedrun_seed$s.out; tail -1 $OUT/speedrun_seed$s.out | cut -c1-2000
done
