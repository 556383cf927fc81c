set -x
mkdir -p data && tar xJf .carry/ref.tar.xz -C data
nvidia-smi --query-gpu=name,clocks.sm,power.draw --format=csv
python3 -c "import torch; print(torch.__version__, torch.backends.cudnn.version(), torch.version.cuda)"
python3 exp/bench_cudnn.py 2>&1 | tee $OUT/call72_bench.out
