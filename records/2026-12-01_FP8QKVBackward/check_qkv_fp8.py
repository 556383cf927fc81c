"""Experiment (issue 3): QKVProductFP8 (the qkv product's gradients in FP8 with 1x128 / 128x128 block scales) on
the reference shape: errors against a PyTorch emulation of the same recipe and against float32, bits twice,
and fwd+bwd time against main's path (FP8 forward, bf16 backward). python3 exp/check_qkv_fp8.py"""
import json, os, sys
import torch
sys.path.insert(0, os.getcwd())
import train_plm as tp
from triton.testing import do_bench

def out(tag, **kw):
    print(tag, json.dumps(kw), flush=True)

dev = "cuda"
torch.manual_seed(0)
T, H, hd, V = 65536, 6, 128, 33
D = H * hd
e4 = torch.float8_e4m3fn
x = tp.norm(torch.randn(T, D, device=dev)).bfloat16().requires_grad_()
w = (torch.randn(3 * D, D, device=dev) / D ** 0.5).requires_grad_()
table = torch.randn(V, D, device=dev, dtype=torch.bfloat16, requires_grad=True)
tokens = torch.randint(0, V, (T,), device=dev)
lam = torch.tensor([0.7, -0.4], device=dev, requires_grad=True)
pos = torch.arange(T, device=dev) % 300
inv = 1.0 / 10000 ** (torch.arange(0, hd, 2, device=dev).float() / hd)
ang = (pos[:, None].float() * inv[None])[:, None]
cos, sin = ang.cos(), ang.sin()
grads = [torch.randn(T, H, hd, device=dev, dtype=torch.bfloat16) for _ in range(3)]
inputs = [x, w, table, lam]

# block_mm with fp32 output (the weight gradient)
a8 = torch.randn(256, 512, device=dev).to(e4); b8 = torch.randn(384, 512, device=dev).to(e4)
try:
    y = tp.block_mm(a8, torch.ones(4, 256, device=dev).t(), b8, torch.ones(3, 4, device=dev), torch.float32)
    out("BLOCK_MM_FP32", ok=True, err=float((y - a8.float() @ b8.float().t()).abs().max()))
except Exception as e:
    out("BLOCK_MM_FP32", ok=False, error=repr(e)[:400])

def new():
    return tp.QKVProductFP8.apply(x, w, *tp.fp8_weight(w, "blocks"), tokens, table, lam, cos, sin, H)

def old():
    qkv = tp.linear(x, w, tp.fp8_weight(w))
    return tp.qkv_prep(qkv, tokens, table, lam, cos, sin, H)

def emulate():  # the recipe in PyTorch, float32 arithmetic
    s = tp.normed_fp8_scale(D)
    x8 = (x.detach().float() * s).to(e4)
    w8, ws = tp.fp8_rowwise(w.detach().bfloat16())
    qkv = ((x8.float() / s) @ (w8.float() * ws).t()).bfloat16().float().requires_grad_()
    outs = tp.qkv_prep_reference(qkv, table.detach().float()[tokens], lam.detach(), cos, sin, H)
    (g,) = torch.autograd.grad(outs, [qkv], [t.float() for t in grads])
    gb = g.view(T, 3 * H, hd)
    gs = gb.abs().amax(-1, keepdim=True).clamp_min(1e-30) / 448
    g8 = (gb / gs).to(e4).float() * gs
    gt = g.t().reshape(3 * D, T // 128, 128)
    gts = gt.abs().amax(-1, keepdim=True).clamp_min(1e-30) / 448
    g8t = ((gt / gts).to(e4).float() * gts).reshape(3 * D, T)
    wt8, wts = tp.fp8_blocks(w.detach().bfloat16().t())
    wtd = (wt8.float().view(D // 128, 128, 3 * D // 128, 128) * wts[:, None, :, None]).view(D, 3 * D)
    dx = g8.view(T, 3 * D) @ wtd.t()
    dw = g8t @ (x8.float() / s)
    return [t.detach() for t in outs] + [dx, dw]

def run(f):
    outs = f()
    gr = torch.autograd.grad(outs, inputs, grads)
    torch.cuda.synchronize()
    return [t.detach() for t in outs] + list(gr)

exact_outs = tp.qkv_prep_reference(x.float() @ w.t(), table.float()[tokens], lam, cos, sin, H)
exact = [t.detach() for t in exact_outs] + list(torch.autograd.grad(exact_outs, inputs, [t.float() for t in grads]))
names = ["q", "k", "v", "dx", "dw", "dtable", "dlam"]
rel = lambda a, b: round(float((a.float() - b.float()).norm() / b.float().norm()), 5)
emu = emulate()
for name, f in (("new", new), ("old", old)):
    try:
        r1, r2 = run(f), run(f)
        out("CHECK", path=name, same_bits_twice=all(torch.equal(a, b) for a, b in zip(r1, r2)),
            dtypes=[str(t.dtype) for t in r1],
            vs_fp32={n: rel(a, b) for n, a, b in zip(names, r1, exact)},
            vs_emulation={n: rel(a, b) for n, a, b in zip(names, r1, emu)} if name == "new" else None)
        fb = lambda: torch.autograd.backward(f(), grads)
        ms = do_bench(fb, warmup=10, rep=200, grad_to_none=inputs)
        out("TIME", path=name, fwdbwd_ms=round(ms, 4), per_step_ms=round(ms * 192, 1))
    except Exception as e:
        import traceback; traceback.print_exc()
        out("CHECK", path=name, error=repr(e)[:600])
from torch.profiler import profile, ProfilerActivity
for name, f in (("new", new), ("old", old)):
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(5):
            torch.autograd.backward(f(), grads)
        torch.cuda.synchronize()
    kern = {}
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            kern[e.name] = kern.get(e.name, 0) + e.device_time / 5 / 1000
    out("KERNELS", path=name, total_ms=round(sum(kern.values()), 4),
        top=[(n[:80], round(t, 4)) for n, t in sorted(kern.items(), key=lambda x: -x[1])[:14]])
