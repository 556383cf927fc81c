set -x
mkdir -p data && tar xJf .carry/ref.tar.xz -C data
nvidia-smi --query-gpu=name,serial --format=csv
export TORCHINDUCTOR_CACHE_DIR=/tmp/ind
TORCH_LOGS=recompiles python train_plm.py --preset reference --steps 30 --eval_every 0 --save_model false --run_id ref30_graph_empty --log_dir $OUT > $OUT/ref30_graph_empty.out 2>&1
tail -2 $OUT/ref30_graph_empty.out | cut -c1-2000
grep -c Recompiling $OUT/ref30_graph_empty.out
python train_plm.py --steps 30 --eval_every 0 --stop_at_target false --save_model false --run_id speedrun30_empty --log_dir $OUT > $OUT/speedrun30_empty.out 2>&1
tail -1 $OUT/speedrun30_empty.out | cut -c1-2000
