set -x
mkdir -p data && tar xJf .carry/ref.tar.xz -C data
nvidia-smi --query-gpu=name,serial --format=csv
export TORCHINDUCTOR_CACHE_DIR=/tmp/ind
A="--steps 20 --eval_every 0 --stop_at_target false --log_every 5 --log_dir $OUT --out_dir /tmp/ck"
python train_plm.py $A --save_every 10 --run_id full > $OUT/full.out 2>&1; tail -1 $OUT/full.out | cut -c1-1500
ls /tmp/ck/full
python train_plm.py --resume /tmp/ck/full/ckpt_000010.pt --run_id resumed --log_dir $OUT --out_dir /tmp/ck > $OUT/resumed.out 2>&1; grep -i "resumed from\|graph" $OUT/resumed.out | head; tail -1 $OUT/resumed.out | cut -c1-1500
