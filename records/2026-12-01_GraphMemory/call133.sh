set -x
mkdir -p data && tar xJf .carry/ref.tar.xz -C data
python -c "import torch, triton; print(torch.__version__, triton.__version__)"
nvidia-smi --query-gpu=name,serial,memory.total,power.limit --format=csv
export TORCHINDUCTOR_CACHE_DIR=/tmp/ind
for g in true false; do
  TORCH_LOGS=recompiles python train_plm.py --preset reference --steps 30 --eval_every 0 --save_model false --cuda_graph $g --run_id ref30_graph_$g --log_dir $OUT > $OUT/ref30_graph_$g.out 2>&1
  tail -4 $OUT/ref30_graph_$g.out | cut -c1-2000
done
python train_plm.py --steps 30 --eval_every 0 --stop_at_target false --save_model false --run_id speedrun30 --log_dir $OUT > $OUT/speedrun30.out 2>&1
tail -3 $OUT/speedrun30.out | cut -c1-2000
