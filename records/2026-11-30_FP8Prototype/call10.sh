# GPU call 10 (nvidia-h200-x2), branch fp8-prototype: does --fp8 true compile, how fast, does it learn? And after it,
# on GPU0: which gradients are not bit-reproducible (exp/determinism.py, issue 10).
# GPU0: reference preset 200 steps with --fp8 true (against records/2026-11-30_RopeTablesBlockOrder's 448,962
# tokens/s, val 2.8251). GPU1: speedrun preset seed 0, whole schedule, --fp8 true (against Warmup50 seed 0:
# 99.7 s, val 2.438; and the bf16 speedrun at this commit: run it too if time allows).
export PYTHONUNBUFFERED=1 TORCHINDUCTOR_CACHE_DIR=/tmp/ind NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
mkdir -p data /tmp/L && tar xzf .carry/ref.tar.gz -C data
(CUDA_VISIBLE_DEVICES=0 TORCH_LOGS=recompiles timeout 400 python3 train_plm.py --preset reference --fp8 true --run_id reference_fp8 --log_dir /tmp/L --save_model false > /tmp/L/o_ref_fp8.out 2>&1; echo "ref fp8 done $SECONDS"
 CUDA_VISIBLE_DEVICES=0 CUBLAS_WORKSPACE_CONFIG=:4096:8 timeout $(( 560 - SECONDS )) python3 exp/determinism.py > /tmp/L/determinism.out 2>&1; echo "determinism done $SECONDS") &
(CUDA_VISIBLE_DEVICES=1 timeout 240 python3 train_plm.py --stop_at_target false --fp8 true --seed 0 --run_id speedrun_fp8_s0 --log_dir /tmp/L --save_model false > /tmp/L/o_sr_fp8.out 2>&1; echo "sr fp8 done $SECONDS"
 CUDA_VISIBLE_DEVICES=1 timeout $(( 560 - SECONDS )) python3 train_plm.py --stop_at_target false --seed 0 --run_id speedrun_bf16_s0 --log_dir /tmp/L --save_model false > /tmp/L/o_sr_bf16.out 2>&1; echo "sr bf16 done $SECONDS") &
wait
cd /tmp/L && tar czf $OUT/call10.tar.gz . ; cd - > /dev/null
for f in /tmp/L/*.txt; do echo "== $f"; grep -h "warm-up\|val_loss:\|target" $f | grep -v "^ \|^#\|config\|TARGET" | cut -c1-150; grep -o '"tokens_per_s.*' $f | cut -c1-260; done
grep -h "^DETERMINISM" /tmp/L/determinism.out | cut -c1-1200
for f in /tmp/L/*.out; do echo "== $f"; tail -n 3 $f | cut -c1-400; done
