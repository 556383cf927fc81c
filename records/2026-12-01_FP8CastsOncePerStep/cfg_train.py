"""Experiment: train_plm.train with extra global inductor settings from the env var INDUCTOR_EXTRA (JSON).
INDUCTOR_EXTRA='{"aggressive_fusion": true}' python3 exp/cfg_train.py --preset reference --steps 30 ..."""
import json, os, sys
sys.path.insert(0, os.getcwd())
import torch._inductor.config as ic
import train_plm as tp
for k, v in json.loads(os.environ.get("INDUCTOR_EXTRA", "{}")).items():
    obj = ic
    *path, last = k.split(".")
    for p in path:
        obj = getattr(obj, p)
    setattr(obj, last, v)
    print("INDUCTOR_EXTRA", k, "=", v, flush=True)
tp.train(sys.argv[1:])
