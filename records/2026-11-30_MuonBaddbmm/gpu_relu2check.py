"""GPU check of train_plm.relu2_fp8 (ReLU² + row-wise FP8 cast, one Triton kernel) against fp8_rowwise(relu(h)²),
eager and compiled as the trainer compiles (deterministic inductor, KernelChoices), on one reference-sized
activation (65,536 x 1,536 bf16): bytes and scales equal, and each one's time (do_bench, mean ms) and GB/s.
Then FP8ReLU2Linear against linear(relu(h)², w, 2), both compiled: output and gradients. python3 exp/gpu_relu2check.py"""
import os, sys
import torch
import torch.nn.functional as F
sys.path.insert(0, os.getcwd())
import train_plm as tp
from triton.testing import do_bench
torch._inductor.config.deterministic = True
torch._inductor.config.inductor_choices_class = tp.KernelChoices
torch.manual_seed(0)
h = torch.randn(65536, 1536, device="cuda", dtype=torch.bfloat16)
h[7] = -1.0
got8, gots = tp.relu2_fp8(h)
eager8, eagers = tp.fp8_rowwise(F.relu(h).square())
ind = torch.compile(lambda h: tp.fp8_rowwise(F.relu(h).square()), dynamic=False)
ind8, inds = ind(h)
u = lambda t: t.view(torch.uint8)
for name, (w8, ws) in (("eager", (eager8, eagers)), ("inductor", (ind8, inds))):
    print(f"RELU2 vs {name}: fp8 bytes differing {int((u(got8) != u(w8)).sum())} of {got8.numel()}, "
          f"scales equal {torch.equal(gots, ws)} (max rel diff {float(((gots - ws).abs() / ws).max()):.2e})", flush=True)
nbytes = h.numel() * 2 + got8.numel() + gots.numel() * 4
for name, fn in (("relu2_fp8 kernel", lambda: tp.relu2_fp8(h)), ("inductor", lambda: ind(h))):
    ms = do_bench(fn, warmup=25, rep=200)
    print(f"RELU2 time {name}: {ms:.4f} ms, {nbytes / ms / 1e6:.0f} GB/s", flush=True)
# the autograd path, compiled: the new Function against the FP8Linear path it replaces
w = torch.randn(768, 1536, device="cuda", dtype=torch.bfloat16) / 40
g = torch.randn(65536, 768, device="cuda", dtype=torch.bfloat16)
outs = {}
for name, f in (("FP8ReLU2Linear", lambda a, b: tp.FP8ReLU2Linear.apply(a, b)),
                ("linear mode 2", lambda a, b: tp.linear(F.relu(a).square(), b, 2))):
    a, b = (h[:8192] * 0.5).clone().requires_grad_(), w.clone().requires_grad_()
    cf = torch.compile(f, dynamic=False)
    y = cf(a, b)
    y.backward(g[:8192])
    outs[name] = (y.detach().float(), a.grad.float(), b.grad.float())
for i, what in enumerate(("output", "input grad", "weight grad")):
    x, z = outs["FP8ReLU2Linear"][i], outs["linear mode 2"][i]
    print(f"RELU2 compiled {what}: equal {torch.equal(x, z)}, max rel diff {float((x - z).abs().max() / z.abs().max()):.2e}", flush=True)
