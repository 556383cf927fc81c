# GPU call 66 (session 16, nvidia-h200-x2): embeddings looked up inside the blocks (GatherRows, qkv_prep's
# kernel reads the value-embedding table) + the attention changes of call 65.
# (A) GPU0: compiled (compile_regions) vs eager gradients, 4 blocks, main and new; GPU1: profile of new's step.
# (B) 60-step runs, new GPU0 / main GPU1, cold caches; (C) the same, GPUs swapped, cold caches.
export PYTHONUNBUFFERED=1
mkdir -p data /tmp/L && tar xzf .carry/ref.tar.gz -C data
nvidia-smi --query-gpu=index,serial,pci.bus_id --format=csv,noheader
CUDA_VISIBLE_DEVICES=0 TORCHINDUCTOR_CACHE_DIR=/tmp/ind_gc timeout 170 python3 exp/gradcheck_gpu.py 4 exp/train_plm_main.py train_plm.py > /tmp/L/gradcheck.out 2>&1 &
CUDA_VISIBLE_DEVICES=1 TORCHINDUCTOR_CACHE_DIR=/tmp/ind_pr timeout 170 python3 exp/profile_step.py --preset reference --steps 18 --eval_every 0 --save_model false --log_dir /tmp/L --run_id profile_new > /tmp/L/profile_new.out 2>&1 &
wait; echo "A $SECONDS"
grep -a "^GRAD\|Error" /tmp/L/gradcheck.out | cut -c1-600
grep -aE "PROFILE|GAPS|KERNEL|Error" /tmp/L/profile_new.out | head -40 | cut -c1-220
run() {  # gpu code run_id
  CUDA_VISIBLE_DEVICES=$1 TORCHINDUCTOR_CACHE_DIR=/tmp/ind_$3 TORCH_LOGS=recompiles timeout 200 python3 $2 --preset reference --steps 60 --eval_every 60 --save_model false --log_dir /tmp/L --run_id $3 > /tmp/L/$3.out 2>&1
}
run 0 train_plm.py new_60_gpu0 & run 1 exp/train_plm_main.py main_60_gpu1 & wait; echo "B $SECONDS"
run 0 exp/train_plm_main.py main_60_gpu0 & run 1 train_plm.py new_60_gpu1 & wait; echo "C $SECONDS"
for r in new_60_gpu0 main_60_gpu1 main_60_gpu0 new_60_gpu1; do echo "== $r"; grep -a "Recompiling\|Error\|warm-up" /tmp/L/$r.out | head -8 | cut -c1-250; grep -a "^RESULT" /tmp/L/$r.out | python3 -c "
import json,sys
for l in sys.stdin: d=json.loads(l[7:]); print({k:d.get(k) for k in ('tokens_per_s','step_time_ms_median','mfu','warmup_s','first_step_s','val_loss','weights_sha256')})"; done
cd /tmp/L && tar czf $OUT/call66.tgz *.out *.txt; ls $OUT
