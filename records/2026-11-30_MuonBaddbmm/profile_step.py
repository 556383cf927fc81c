"""Experiment: torch.profiler (CUDA kernels) over 3 steady-state steps of the real training step of train_plm.py.
python3 exp/profile_step.py --preset reference --steps 18 ...   (the trainer's own flags)
It hooks lr_multiplier, which train_step calls once at its start, to advance the profiler's schedule: the 2
warm-up steps and training steps 0-10 wait, 11-12 warm the profiler up, 13-15 are recorded."""
import os, sys, json
sys.path.insert(0, os.getcwd())
import torch
import train_plm as tp
from torch.profiler import profile, ProfilerActivity, schedule

prof = profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], record_shapes=True, schedule=schedule(wait=13, warmup=2, active=3, repeat=1))
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
# which host-side ops launch what (eager ops outside the compiled graph: optimizer, masks, copies), with shapes
ops = sorted(((e.self_device_time_total / N / 1e3, e.count // N, e.key, str(e.input_shapes)[:120])
              for e in prof.key_averages(group_by_input_shape=True) if e.key.startswith("aten::") and e.self_device_time_total > 0),
             reverse=True)
for t, cnt, k, shp in ops[:40]:
    print(f"OP {t:8.2f} ms {cnt:6d}x  {k}  {shp}")

# GPU idle time: the union of kernel intervals against the span of the 3 recorded steps; the longest gaps, each
# with the kernels on either side (where the host, not the GPU, set the pace)
try:
    kev = sorted((e.start_ns(), e.start_ns() + e.duration_ns(), e.name()) for e in prof.profiler.kineto_results.events()
                 if e.device_type() == torch.autograd.DeviceType.CUDA)
except Exception as ex:  # kineto's Python surface differs across versions
    print("GAPS unavailable:", repr(ex)[:200])
    kev = []
if kev:
    cur_end, prev, busy, gaps, pairs = kev[0][1], kev[0][2], kev[0][1] - kev[0][0], [], {}
    for s, e, n in kev[1:]:
        if s > cur_end:
            gaps.append((s - cur_end, prev[:60], n[:60]))
            busy += e - s
        elif e > cur_end:
            busy += e - cur_end
        if e >= cur_end:
            cur_end, prev = e, n
    span = cur_end - kev[0][0]
    print(f"GAPS span {span / N / 1e6:.1f} ms/step, busy {busy / N / 1e6:.1f}, idle {(span - busy) / N / 1e6:.1f}; "
          f"gaps > 20 us: {sum(g > 20e3 for g, _, _ in gaps) / N:.0f}/step totalling "
          f"{sum(g for g, _, _ in gaps if g > 20e3) / N / 1e6:.1f} ms/step", flush=True)
    for g, a, b in gaps:
        key = (a, b)
        pairs[key] = pairs.get(key, 0) + g
    for (a, b), g in sorted(pairs.items(), key=lambda x: -x[1])[:15]:
        print(f"GAP {g / N / 1e6:7.2f} ms/step  after {a}  before {b}")
m = torch.cuda.memory_stats()
print(f"MEMORY peak allocated {m['allocated_bytes.all.peak'] / 2**30:.1f} GiB, peak reserved "
      f"{m['reserved_bytes.all.peak'] / 2**30:.1f} GiB, alloc retries {m['num_alloc_retries']}, "
      f"cudaMalloc calls {m.get('num_device_alloc', 'n/a')}, cudaFree calls {m.get('num_device_free', 'n/a')}", flush=True)
