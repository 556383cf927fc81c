"""Check (issue 3): the spread of the MFU denominator, train_plm.measure_peak_flops (the fastest of 20 products after
3: this code) against the median of 10 after 3 (before), and the median after 1 s of settling load. Each trial as in
a run: 3 s of heavy load (the warm-up's steps), 1 s idle (the state reset), then the measurement; 5 trials of each,
in turn. python3 exp/peak_check.py"""
import os, sys, time, json
import numpy as np
import torch
sys.path.insert(0, os.getcwd())
import train_plm as tp
dev = torch.device("cuda")
a = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)


def median_of_10(settle_s=0.0):
    t = time.perf_counter()
    while time.perf_counter() - t < settle_s:
        for _ in range(10):
            a @ a
        torch.cuda.synchronize()
    for _ in range(3):
        a @ a
    times = []
    for _ in range(10):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        a @ a
        e.record()
        e.synchronize()
        times.append(s.elapsed_time(e) / 1e3)
    return 2 * 8192 ** 3 / float(np.median(times))


variants = {"fastest_of_20 (this code)": lambda: tp.measure_peak_flops(dev), "median_of_10 (before)": median_of_10,
            "median_of_10_after_1s_load": lambda: median_of_10(1.0)}
res = {k: [] for k in variants}
for i in range(5):
    for name, fn in variants.items():
        t = time.perf_counter()
        while time.perf_counter() - t < 3:
            for _ in range(10):
                a @ a
            torch.cuda.synchronize()
        time.sleep(1)
        res[name].append(round(fn() / 1e12, 1))
print("PEAK", json.dumps(res), flush=True)
