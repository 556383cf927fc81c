"""TRITON_INTERPRET=1 python exp/cpu_check_2h.py: the two-heads kernels against segment_attention in float32."""
import os, sys, torch
sys.path.insert(0, os.getcwd()); sys.path.insert(0, os.path.join(os.getcwd(), "exp"))
import train_plm as tp
import attn_2h
torch.manual_seed(0)
H, hd = 4, 16
worst = {}
for window in (0, 40, 126):
    lengths = [37, 100, 64, 5, 200, 1, 60, 45, 128]
    T = sum(lengths)
    starts = torch.zeros(T, dtype=torch.bool)
    starts[torch.tensor([0] + lengths[:-1]).cumsum(0)] = True
    doc, lo, hi = tp.document_ranges(*tp.document_ids(starts), window)
    q, k, v = (torch.randn(T, H, hd, requires_grad=True) for _ in range(3))
    go = torch.randn(T, H, hd)
    want = tp.segment_attention(*(t.transpose(0, 1)[None] for t in (q, k, v)), lengths, window)[0].transpose(0, 1)
    want_grads = torch.autograd.grad(want, (q, k, v), go)
    o, lse = attn_2h.forward_2h(q.detach(), k.detach(), v.detach(), doc, lo, hi, window=window)
    got = attn_2h.backward_2h(go, q.detach(), k.detach(), v.detach(), o, lse, doc, lo, hi, window=window)
    for name, a, b in zip(["o", "dq", "dk", "dv"], (o,) + got, (want,) + want_grads):
        worst[f"{name}_w{window}"] = float((a - b).abs().max() / b.abs().max())
print(worst)
assert max(worst.values()) < 1e-4, worst
print("OK")
