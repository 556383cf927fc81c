# GPU call 37 (nvidia-h200-x2), main with 64-token FlexAttention blocks + KernelChoices (records/2026-11-30_Flex64):
# GPU0 the README's throughput command (reference preset, 200 steps); GPU1 the speed-track command, seeds 0 and 1.
export PYTHONUNBUFFERED=1
mkdir -p data && tar xzf .carry/ref.tar.gz -C data
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv,noheader
( CUDA_VISIBLE_DEVICES=0 TORCHINDUCTOR_CACHE_DIR=/tmp/ind0 TORCH_LOGS=recompiles timeout 470 python3 train_plm.py --preset reference > /tmp/ref200.out 2>&1; echo "ref rc $?" ) &
( for s in 0 1; do CUDA_VISIBLE_DEVICES=1 TORCHINDUCTOR_CACHE_DIR=/tmp/ind1_$s timeout 230 python3 train_plm.py --seed $s > /tmp/speed$s.out 2>&1; echo "speed $s rc $?"; done ) &
wait
echo "done $SECONDS"
grep -a "warm-up\|RESULT\|Recompil\|step:200" /tmp/ref200.out | cut -c1-900
for s in 0 1; do grep -a "warm-up\|reached\|RESULT" /tmp/speed$s.out | cut -c1-900; done
cp /tmp/*.out logs/*.txt $OUT/ 2>/dev/null; ls $OUT
