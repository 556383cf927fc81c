"""Experiment: which host ops issue the step's memsets and small kernels. torch.profiler over 2 steady steps of
the real training step (hook as in profile_step.py); for each CPU op that launched a Memset, its name and its
parents' names, with counts per step; kernels per step."""
import os, sys, collections
sys.path.insert(0, os.getcwd())
import torch
import train_plm as tp
from torch.profiler import profile, ProfilerActivity, schedule

N = 2
prof = profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], record_shapes=True,
               schedule=schedule(wait=13, warmup=1, active=N, repeat=1))
orig = tp.lr_multiplier
def hooked(step, cfg):
    if sys._getframe(1).f_code.co_name == "train_step":
        prof.step()
    return orig(step, cfg)
tp.lr_multiplier = hooked
prof.start()
tp.train(sys.argv[1:])
prof.stop()
counts, kern = collections.Counter(), collections.Counter()
for e in prof.events():
    ks = getattr(e, "kernels", [])
    for k in ks:
        kern[k.name[:60]] += 1
    n = sum(1 for k in ks if k.name.startswith("Memset"))
    if n:
        chain, p = [e.name], e.cpu_parent
        while p is not None and len(chain) < 5:
            chain.append(p.name)
            p = p.cpu_parent
        counts[(" <- ".join(chain)[:200], str(e.input_shapes)[:100])] += n
print("KERNELS_PER_STEP", sum(kern.values()) / N)
for (c, s), n in counts.most_common(25):
    print(f"MEMSET {n / N:7.1f}/step  {c}  {s}")
