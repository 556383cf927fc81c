# GPU call 107 (session 22): the MLP kernel's forward epilogue without the half split; its floors; backward tiles.
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=index,serial,pci.bus_id,clocks.max.sm --format=csv,noheader
timeout 400 python3 exp/mlp_epi.py 2>&1 | grep -v Warn | tee $OUT/call107_mlp_epi.out | grep -E "BITS|TIME|FAILED|Error|error" | cut -c1-400
