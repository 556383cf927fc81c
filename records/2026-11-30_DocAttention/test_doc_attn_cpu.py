"""CPU check of exp/doc_attn.py's kernels under TRITON_INTERPRET=1 against plain PyTorch (fp32)."""
import os, sys
os.environ.setdefault("TRITON_INTERPRET", "1")
sys.path.insert(0, os.getcwd()); sys.path.insert(0, os.path.join(os.getcwd(), "exp"))
import torch
import train_plm as tp
import doc_attn as da

torch.manual_seed(0)
T, H, D = int(os.environ.get("T", 512)), 2, 128
dt = getattr(torch, os.environ.get("DT", "bfloat16"))
lengths = [37, 100, 64, 5, 200, 1, 60]
lengths.append(T - sum(lengths))
starts = torch.zeros(T, dtype=torch.bool)
at = 0
for n in lengths:
    starts[at] = True; at += n
doc, lo, hi = da.doc_ranges(starts)
print("lo", lo.tolist(), "hi", hi.tolist())
_, pos = tp.document_ids(starts)
inv = 1.0 / 10000 ** (torch.arange(0, D, 2).float() / D)
ang = (pos[:, None].float() * inv[None])[:, None]
cos, sin = ang.cos(), ang.sin()
qkv0 = torch.randn(T, 3 * H * D)
ve0 = torch.randn(T, H * D)
lam0 = torch.tensor([0.7, 0.4])
go = torch.randn(T, H * D)

# reference, float32
qkv, ve, lam = (t.clone().requires_grad_() for t in (qkv0, ve0, lam0))
q, k, v = tp.qkv_prep_reference(qkv, ve, lam, cos, sin, H)
y = tp.segment_attention(*(t.transpose(0, 1)[None] for t in (q, k, v)), lengths, 0)[0].transpose(0, 1).reshape(T, -1)
y.backward(go)
ref = (y.detach(), qkv.grad, ve.grad, lam.grad)

# kernels: prep forward (train_plm's kernel), attention, fused backward
qkvb, veb = qkv0.to(dt), ve0.to(dt)
q8, k8, v8 = (qkvb.new_empty(T, H, D) for _ in range(3))
c2, s2 = cos.squeeze(1).contiguous(), sin.squeeze(1).contiguous()
tp._qkv_prep_fwd[(H, T // 64)](qkvb, veb, veb.stride(0), lam0, c2, s2, q8, k8, v8, T, torch.finfo(torch.float32).eps,
                                H, D, True, 64, num_warps=4)
o, lse = da.attn_forward(q8, k8, v8, doc, lo, hi)
gob = go.to(dt).view(T, H, D)
dqkv, dve, dlam = da.attn_backward(gob, q8, k8, v8, o, lse, doc, lo, hi, prep=(qkvb, veb, lam0, c2, s2))
dq, dk, dv = da.attn_backward(gob, q8, k8, v8, o, lse, doc, lo, hi)
# unfused: check against autograd of q, k, v directly
qr, kr, vr = (t.detach().float().requires_grad_() for t in (q8, k8, v8))
yr = tp.segment_attention(*(t.transpose(0, 1)[None] for t in (qr, kr, vr)), lengths, 0)[0].transpose(0, 1)
yr.backward(go.view(T, H, D))


def rel(a, b):
    return float((a.float() - b.float()).norm() / b.float().norm())


print("out", rel(o.reshape(T, -1), ref[0]))
print("dqkv", rel(dqkv, ref[1]), "q", rel(dqkv[:, :H * D], ref[1][:, :H * D]), "k", rel(dqkv[:, H * D:2 * H * D], ref[1][:, H * D:2 * H * D]),
      "v", rel(dqkv[:, 2 * H * D:], ref[1][:, 2 * H * D:]))
print("dve", rel(dve, ref[2]), "dlam", dlam.tolist(), ref[3].tolist())
print("unfused dq dk dv", rel(dq, qr.grad), rel(dk, kr.grad), rel(dv, vr.grad))
