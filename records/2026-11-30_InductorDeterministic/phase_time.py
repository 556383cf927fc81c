"""Experiment: a training run of the given train_plm.py copy with its optimizer steps timed on the GPU.
python3 exp/phase_time.py PATH/train_plm.py --preset reference --steps 60 ...   (the trainer's own flags)
CUDA events around Muon.step and Adam.step (GPU time from the first to the last of their kernels, idle included:
the eager optimizer steps are where the host can set the pace); prints PHASE lines with the median over the
training steps (warm-up steps excluded)."""
import importlib.util, os, sys, statistics, time
import torch
path, argv = sys.argv[1], sys.argv[2:]
sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
spec = importlib.util.spec_from_file_location("train_plm", path)
tp = importlib.util.module_from_spec(spec)
sys.modules["train_plm"] = tp
spec.loader.exec_module(tp)
events = {"muon": [], "adam": []}

def timed(cls, key):
    orig = cls.step
    def step(self, *a, **k):
        if not torch.cuda.is_available():  # a CPU check of this script: host time
            s = time.perf_counter(); out = orig(self, *a, **k)
            events[key].append((s, time.perf_counter())); return out
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        out = orig(self, *a, **k)
        e.record()
        events[key].append((s, e))
        return out
    cls.step = step
timed(tp.Muon, "muon")
timed(torch.optim.Adam, "adam")
tp.train(argv)
if torch.cuda.is_available():
    torch.cuda.synchronize()
for key, ev in events.items():
    ms = [s.elapsed_time(e) if torch.cuda.is_available() else (e - s) * 1e3 for s, e in ev[2:]]  # the two warm-up steps excluded
    print(f"PHASE {key}.step median {statistics.median(ms):.2f} ms over {len(ms)} steps (min {min(ms):.2f}, max {max(ms):.2f})", flush=True)
