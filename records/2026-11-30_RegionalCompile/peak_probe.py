"""Experiment (session 14): how stable is measure_peak_flops, the MFU denominator? Five calls of the trainer's
own function, then 50 timed 8192^3 bf16 products after a 2 s spin-up: median, max and min rate (TFLOP/s)."""
import importlib.util, sys, time, numpy as np, torch
spec = importlib.util.spec_from_file_location("train_plm", sys.argv[1]); tp = importlib.util.module_from_spec(spec)
sys.modules["train_plm"] = tp; spec.loader.exec_module(tp)
dev = torch.device("cuda")
print("PEAK trainer's measure_peak_flops x5:", [round(tp.measure_peak_flops(dev) / 1e12, 1) for _ in range(5)], flush=True)
a = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16); b = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
t = time.time()
while time.time() - t < 2:
    a @ b; torch.cuda.synchronize()
r = []
for _ in range(50):
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record(); a @ b; e.record(); e.synchronize()
    r.append(2 * 8192 ** 3 / (s.elapsed_time(e) / 1e3) / 1e12)
print(f"PEAK 50 after spin-up: median {np.median(r):.1f} max {max(r):.1f} min {min(r):.1f} TFLOP/s", flush=True)
