# GPU call 132 (session 26): main's MicroBatchGraph with --fp8 false (the graph path had only run with FP8):
# the speedrun preset, 12 steps, eval at the end, with and without --cuda_graph; the two must give one weights_sha256.
export PYTHONUNBUFFERED=1
mkdir -p data /tmp/L && tar xJf .carry/ref.tar.xz -C data
nvidia-smi --query-gpu=index,serial,pci.bus_id,clocks.max.sm --format=csv,noheader
sha256sum train_plm.py
for g in true false; do
  TORCHINDUCTOR_CACHE_DIR=/tmp/ind TORCH_LOGS=recompiles timeout 150 python3 train_plm.py --fp8 false --cuda_graph $g --steps 12 \
    --eval_every 0 --stop_at_target false --save_model false --log_dir /tmp/L --run_id bf16_graph_$g > /tmp/L/bf16_graph_$g.out 2>&1
  echo "cuda_graph $g rc=$? recompiles: $(grep -ac Recompiling /tmp/L/bf16_graph_$g.out)"
  grep -a "warm-up\|^RESULT\|Error" /tmp/L/bf16_graph_$g.out | cut -c1-1200
  cp /tmp/L/bf16_graph_$g.out /tmp/L/bf16_graph_$g.txt $OUT/
done
