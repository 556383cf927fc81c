# GPU call 48 (session 13). (1) region_probe: which part of a block breaks nested_compile_region on torch 2.11.
# (2) the real fix for inductor's deterministic mode (torch.compile options; the global flag is reset by
# dynamo after each frame, found in call 47) against main: 60 reference steps each, cold caches, same GPU.
export PYTHONUNBUFFERED=1
mkdir -p data /tmp/L && tar xzf .carry/ref.tar.gz -C data
nvidia-smi --query-gpu=serial,pci.bus_id --format=csv,noheader
timeout 150 python3 exp/region_probe.py exp/train_plm_ncr3.py exp/train_plm_ncr2.py > /tmp/L/region.out 2>&1; echo "region rc $? $SECONDS"
grep -a "^REGION" /tmp/L/region.out | cut -c1-500
A="--preset reference --steps 60 --eval_every 60 --seed 0 --save_model false --log_dir /tmp/L"
TORCHINDUCTOR_CACHE_DIR=/tmp/ind_det TORCH_LOGS=recompiles timeout 215 python3 exp/phase_time.py exp/train_plm_det.py $A --run_id det > /tmp/L/det.out 2>&1; echo "det rc $? $SECONDS"
TORCHINDUCTOR_CACHE_DIR=/tmp/ind_main timeout 215 python3 exp/phase_time.py train_plm.py $A --run_id main > /tmp/L/main.out 2>&1; echo "main rc $? $SECONDS"
for r in det main; do echo "== $r"; grep -a "^PHASE\|^RESULT\|warm-up\|step:10/\|step:60/\|Recompiling\|Error" /tmp/L/$r.out | cut -c1-300; done
cd /tmp/L && tar czf $OUT/call48.tgz *.out *.txt; ls $OUT
