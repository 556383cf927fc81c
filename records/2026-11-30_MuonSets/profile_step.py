"""Experiment: torch.profiler (CUDA kernels) over 3 steady-state steps of the real training step of train_plm.py.
python3 exp/profile_step.py --preset reference --steps 18 ...   (the trainer's own flags)
It hooks lr_multiplier, which train_step calls once at its start, to advance the profiler's schedule: the 2
warm-up steps and training steps 0-10 wait, 11-12 warm the profiler up, 13-15 are recorded."""
import os, sys, json
sys.path.insert(0, os.getcwd())
import torch
import train_plm as tp
from torch.profiler import profile, ProfilerActivity, schedule

prof = profile(activities=[ProfilerActivity.CUDA], schedule=schedule(wait=13, warmup=2, active=3, repeat=1))
orig = tp.lr_multiplier
def hooked(step, cfg):
    if sys._getframe(1).f_code.co_name == "train_step":
        prof.step()
    return orig(step, cfg)
tp.lr_multiplier = hooked
prof.start()
tp.train(sys.argv[1:])
prof.stop()
N = 3
cats, rows = {}, []
for e in prof.key_averages():
    t = e.device_time_total / N / 1e3  # ms per step
    if t <= 0:
        continue
    low = e.key.lower()
    c = ("matmul" if any(s in low for s in ("gemm", "xmma", "cutlass", "nvjet", "sm90_", "splitkreduce")) and "triton" not in low
         else "flex_bwd" if "flex" in low and "backward" in low
         else "flex_fwd" if "flex" in low
         else "triton_other" if "triton" in low
         else "foreach/optimizer" if "multi_tensor" in low or "foreach" in low
         else "memcpy/memset/fill" if "memcpy" in low or "memset" in low or "fill" in low
         else "other")
    cats[c] = cats.get(c, 0) + t
    rows.append((t, e.count // N, e.key[:150]))
print("PROFILE_ms_per_step", json.dumps({k: round(v, 1) for k, v in sorted(cats.items(), key=lambda x: -x[1])}),
      "total", round(sum(cats.values()), 1), flush=True)
rows.sort(reverse=True)
for t, cnt, n in rows[:60]:
    print(f"KERNEL {t:8.2f} ms {cnt:6d}x  {n}")
