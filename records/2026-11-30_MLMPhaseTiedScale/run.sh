# GPU call 6 (nvidia-h200-x2): GPU0 mlm_to_diffusion whose first phase is MLM itself (240 MLM + 160 widening,
# 480 steps) + 100 generated; GPU1 tied embeddings with T5's logit scale, + probes. Then the speedrun preset
# (warm-up 50), seed 0, on 2 GPUs: its curve against records' 1-GPU seed 0.
export PYTHONUNBUFFERED=1 TORCHINDUCTOR_CACHE_DIR=/tmp/inductor NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
mkdir -p data /tmp/L /tmp/ck && tar xzf .carry/ref.tar.gz -C data
R="python3 train_plm.py --out_dir /tmp/ck --log_dir /tmp/L --steps 480 --target_val_loss 0 --eval_every 120"
left() { echo $(( 440 - SECONDS )); }
(export CUDA_VISIBLE_DEVICES=0
 timeout $(left) $R --objective mlm_to_diffusion --mlm_steps 240 --widen_steps 160 --run_id obj_m2d_mlm240_160 > /tmp/L/o_m2d.out 2>&1; echo "m2d done $SECONDS"
 timeout $(left) python3 train_plm.py generate /tmp/ck/obj_m2d_mlm240_160 --num 100 --length 120 --temperature 1.0 --seed 0 --out /tmp/L/gen_obj_m2d_mlm240_160.fasta > /tmp/L/gen.out 2>&1; echo "gen done $SECONDS"
 while [ ! -f /tmp/ck/mlm_tied/model.safetensors ] && [ $SECONDS -lt 330 ]; do sleep 2; done
 timeout $(left) python3 train_plm.py score /tmp/ck/mlm_tied /tmp/L/gen_obj_m2d_mlm240_160.fasta > /tmp/L/score_gen_m2d_by_tied.out 2>&1; echo "score done $SECONDS") &
(export CUDA_VISIBLE_DEVICES=1
 timeout $(left) $R --probe true --tie_embeddings true --run_id mlm_tied > /tmp/L/o_tied.out 2>&1; echo "tied done $SECONDS") &
wait
if [ $SECONDS -lt 320 ]; then
 timeout $(( 575 - SECONDS )) python3 -m torch.distributed.run --standalone --nproc_per_node=2 train_plm.py --out_dir /tmp/ck --save_model false --stop_at_target false --seed 0 --run_id wu50_seed0_2gpu --log_dir /tmp/L > /tmp/L/o_2gpu.out 2>&1; echo "2gpu done $SECONDS"
fi
cd /tmp/L && tar czf $OUT/call6.tar.gz . ; cd - > /dev/null
grep -h "RESULT\|warm-up\|probes:" /tmp/L/*.txt | grep -v "^ \|log(" | cut -c1-900
cat /tmp/L/score*.out | cut -c1-400
for f in /tmp/L/*.out; do echo "== $f"; tail -n 2 $f | cut -c1-300; done
