# GPU call 64 (session 15, nvidia-h200): smoke test of main a89d09f (doc_attention's shape checks) in the compiled
# training path: 6 reference steps, graph breaks and recompiles logged.
export PYTHONUNBUFFERED=1
mkdir -p data /tmp/L && tar xzf .carry/ref.tar.gz -C data
TORCHINDUCTOR_CACHE_DIR=/tmp/ind TORCH_LOGS=recompiles,graph_breaks timeout 170 python3 train_plm.py --preset reference --steps 6 --eval_every 0 --save_model false --log_dir /tmp/L --run_id smoke > /tmp/L/smoke.out 2>&1; echo "rc $? $SECONDS"
grep -a "Graph break\|graph_break\|Recompiling\|Error\|warm-up\|step:6/6\|val_loss" /tmp/L/smoke.out | cut -c1-220 | head -20
cp /tmp/L/smoke.out $OUT/call64_smoke.out
