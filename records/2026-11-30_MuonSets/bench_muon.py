"""Muon's step alone on the reference model (GPU): ms per step on the GPU (CUDA events) and on the host
(the Python time to launch it), median of 20 after 3 warm-up steps, with random gradients.
python3 exp/bench_muon.py PATH_TO_train_plm.py LABEL"""
import importlib.util, json, sys, time
import numpy as np
import torch

spec = importlib.util.spec_from_file_location("tp", sys.argv[1])
tp = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tp)
dev = torch.device("cuda")
cfg = tp.parse_config(["--preset", "reference"], has_gpu=True)
torch.manual_seed(0)
model = tp.ProteinLM(cfg).to(dev)
opts, _ = tp.make_optimizers(model, cfg, True)
muon = opts[1]
for p in model.parameters():
    p.grad = torch.randn_like(p) * 1e-3
gpu, host = [], []
for i in range(23):
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    a.record()
    t = time.perf_counter()
    muon.step()
    h = time.perf_counter() - t
    b.record()
    torch.cuda.synchronize()
    if i >= 3:
        gpu.append(a.elapsed_time(b))
        host.append(h * 1e3)
print("MUON", json.dumps(dict(label=sys.argv[2], gpu_ms=round(float(np.median(gpu)), 2),
                              host_ms=round(float(np.median(host)), 2))), flush=True)
