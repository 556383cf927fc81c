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
# GPU work from kineto's events: kernels, copies and fills on the device, not the user annotations (compiled
# graphs, ProfilerStep, optimizer ranges) that the CPU activity also places on the GPU timeline
def is_annotation(e):
    f = getattr(e, "is_user_annotation", None)
    return bool(f()) if f is not None else e.name().startswith(("##", "ProfilerStep", "Torch-Compiled", "Optimizer."))
kev = sorted((e.start_ns(), e.start_ns() + e.duration_ns(), e.name()) for e in prof.profiler.kineto_results.events()
             if e.device_type() == torch.autograd.DeviceType.CUDA and not is_annotation(e))
if not kev:
    sys.exit("profile_step.py: no GPU events recorded")
cats, per = {}, {}
for s0, e0, n in kev:
    low = n.lower()
    c = ("matmul" if any(s in low for s in ("gemm", "xmma", "cutlass", "nvjet", "sm90_", "splitkreduce")) and "triton" not in low
         else "attn_bwd" if "_attn_bwd" in low or "_attn_delta" in low
         else "attn_fwd" if "_attn_fwd" in low
         else "qkv_prep" if "qkv_prep" in low
         else "relu2" if "relu" in low
         else "norm" if "rms_norm" in low
         else "triton_other" if "triton" in low
         else "foreach/optimizer" if "multi_tensor" in low or "foreach" in low
         else "memcpy/memset/fill" if "memcpy" in low or "memset" in low or "fill" in low
         else "other")
    cats[c] = cats.get(c, 0) + (e0 - s0) / N / 1e6
    t, k = per.get(n, (0, 0))
    per[n] = (t + (e0 - s0) / N / 1e6, k + 1)
print("PROFILE_ms_per_step", json.dumps({k: round(v, 1) for k, v in sorted(cats.items(), key=lambda x: -x[1])}),
      "total", round(sum(cats.values()), 1), flush=True)
for n, (t, k) in sorted(per.items(), key=lambda x: -x[1][0])[:70]:
    print(f"KERNEL {t:8.2f} ms {k // N:6d}x  {n[:150]}")
# which host-side ops launch what (eager ops outside the compiled graph: optimizer, masks, copies), with shapes
ops = sorted(((e.self_device_time_total / N / 1e3, e.count // N, e.key, str(e.input_shapes)[:120])
              for e in prof.key_averages(group_by_input_shape=True) if e.key.startswith("aten::") and e.self_device_time_total > 0),
             reverse=True)
for t, cnt, k, shp in ops[:40]:
    print(f"OP {t:8.2f} ms {cnt:6d}x  {k}  {shp}")
# GPU idle time: the union of kernel intervals against the span of the 3 recorded steps; the longest gaps, each
# with the kernels on either side (where the host, not the GPU, set the pace)
cur_end, prev, busy, gaps, pairs = kev[0][1], kev[0][2], kev[0][1] - kev[0][0], [], {}
for s0, e0, n in kev[1:]:
    if s0 > cur_end:
        gaps.append((s0 - cur_end, prev[:60], n[:60]))
        busy += e0 - s0
    elif e0 > cur_end:
        busy += e0 - cur_end
    if e0 >= cur_end:
        cur_end, prev = e0, n
span = cur_end - kev[0][0]
print(f"GAPS span {span / N / 1e6:.1f} ms/step, busy {busy / N / 1e6:.1f}, idle {(span - busy) / N / 1e6:.1f}; "
      f"gaps > 20 us: {sum(g > 20e3 for g, _, _ in gaps) / N:.0f}/step totalling "
      f"{sum(g for g, _, _ in gaps if g > 20e3) / N / 1e6:.1f} ms/step; all gaps {sum(g for g, _, _ in gaps) / N / 1e6:.1f}", flush=True)
for g, a, b in gaps:
    pairs[(a, b)] = pairs.get((a, b), 0) + g
for (a, b), g in sorted(pairs.items(), key=lambda x: -x[1])[:25]:
    print(f"GAP {g / N / 1e6:7.2f} ms/step  after {a}  before {b}")
m = torch.cuda.memory_stats()
print(f"MEMORY peak allocated {m['allocated_bytes.all.peak'] / 2**30:.1f} GiB, peak reserved "
      f"{m['reserved_bytes.all.peak'] / 2**30:.1f} GiB, alloc retries {m['num_alloc_retries']}, "
      f"cudaMalloc calls {m.get('num_device_alloc', 'n/a')}, cudaFree calls {m.get('num_device_free', 'n/a')}", flush=True)
