"""GPU check of train_plm's fused QK-norm + RoPE + value-embedding kernels against qkv_prep_reference in
float32, at the reference shapes (T 65,536, 6 heads of 128): max error / max value per output and gradient,
and the same bits twice."""
import os, sys, torch
sys.path.insert(0, os.getcwd())
import train_plm as tp
torch.manual_seed(0)
dev = "cuda"
T, H, hd = 65536, 6, 128
qkv = (3 * torch.randn(T, 3 * H * hd, device=dev)).bfloat16().requires_grad_()
tables = torch.randn(T, 2 * H * hd, device=dev, dtype=torch.bfloat16, requires_grad=True)
ve = tables.chunk(2, 1)[1]  # a strided view, as the model passes it
lam = torch.tensor([0.7, -0.4], device=dev, requires_grad=True)
pos = torch.arange(T, device=dev) % 700
ang = (pos[:, None].float() * (1.0 / 10000 ** (torch.arange(0, hd, 2, device=dev).float() / hd))[None])[:, None]
cos, sin = ang.cos(), ang.sin()
grads = [torch.randn(T, H, hd, device=dev, dtype=torch.bfloat16) for _ in range(3)]
ins = [qkv, ve, lam]
want = tp.qkv_prep_reference(qkv.float(), ve.float(), lam, cos, sin, H)
wg = torch.autograd.grad(want, ins, [g.float() for g in grads])
runs = []
for _ in range(2):
    got = tp.qkv_prep(qkv, ve, lam, cos, sin, H)
    gg = torch.autograd.grad(got, ins, grads)
    runs.append([t.clone() for t in list(got) + list(gg)])
names = ["q", "k", "v", "dqkv", "dve", "dlam"]
for n, a, b, c in zip(names, runs[0], list(want) + list(wg), runs[1]):
    print(f"QKVCHECK {n}: rel err {float((a.float() - b.float()).abs().max() / b.float().abs().max()):.2e} "
          f"same bits twice {torch.equal(a, c)} dtype {a.dtype}")
