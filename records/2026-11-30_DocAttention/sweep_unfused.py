"""Experiment (session 15): tile sweep of train_plm.py's own attention backward kernels (as main runs them:
unfused) on a real reference micro-batch; call 59 swept the fused variant's. python3 exp/sweep_unfused.py"""
import json, math, os, sys
import torch
sys.path.insert(0, os.getcwd())
import train_plm as tp
from triton.testing import do_bench
dev = torch.device("cuda")
bf = torch.bfloat16
cfg = tp.parse_config(["--preset", "reference"], has_gpu=True)
loader = tp.PackedLoader(tp.resolve_files(cfg.train_files, "train"), cfg, 0, 1, dev, 0)
for _ in range(3):
    tokens, starts, g = loader.next()
T, H, D = tokens.numel(), 6, 128
doc, lo, hi = tp.document_ranges(*tp.document_ids(starts))
torch.manual_seed(0)
q, k, v = (torch.randn(T, H, D, device=dev) for _ in range(3))
q, k = (t / t.pow(2).mean(-1, keepdim=True).sqrt() for t in (q, k))
q, k, v = (t.to(bf) for t in (q, k, v))
do = torch.randn(T, H, D, device=dev, dtype=bf)
o, lse = getattr(torch.ops, tp.OPS).doc_attention(q, k, v, doc, lo, hi, 0)
delta = torch.empty_like(lse)
tp._attn_delta[(H, T // 64)](o, do, delta, T, H, D, 64, num_warps=4)
dq, dk, dv = (torch.empty_like(q) for _ in range(3))
sc = (D ** -0.5 * math.log2(math.e), D ** -0.5)
ref = getattr(torch.ops, tp.OPS).doc_attention_backward(do, q, k, v, o, lse, doc, lo, hi, 0)
runs = {
    "dkdv": [(64, 64, 4, 2), (64, 64, 4, 3), (64, 32, 4, 2), (64, 32, 4, 3), (128, 64, 8, 2), (128, 32, 8, 2),
             (32, 64, 4, 2), (32, 32, 4, 3), (128, 64, 8, 1), (64, 64, 8, 2), (128, 32, 4, 2), (64, 16, 4, 3)],
    "dq": [(64, 64, 4, 2), (64, 64, 4, 3), (128, 64, 8, 2), (128, 32, 8, 2), (64, 32, 4, 3), (128, 64, 8, 3),
           (128, 32, 4, 2), (32, 64, 4, 2), (64, 64, 8, 2)],
    "fwd": [(64, 64, 4, 3), (128, 64, 8, 3), (128, 64, 8, 4), (64, 64, 4, 4)],
}
for kern, cfgs in runs.items():
    for P, N, w, st in cfgs:
        try:
            if kern == "dkdv":
                fn = lambda: tp._attn_bwd_dkdv[(H, T // P)](q, k, v, do, lse, delta, doc, lo, hi, dk, dv, T, *sc, 0, H, D,
                                                            P, N, 64, num_warps=w, num_stages=st)
                fn(); same = torch.equal(dk, ref[1]) and torch.equal(dv, ref[2])
            elif kern == "dq":
                fn = lambda: tp._attn_bwd_dq[(H, T // P)](q, k, v, do, lse, delta, doc, lo, hi, dq, T, *sc, 0, H, D,
                                                          P, N, 64, num_warps=w, num_stages=st)
                fn(); same = torch.equal(dq, ref[0])
            else:
                o2, l2 = torch.empty_like(o), torch.empty_like(lse)
                fn = lambda: tp._attn_fwd[(H, T // P)](q, k, v, o2, l2, doc, lo, hi, T, sc[0], 0, H, D, P, N, 64,
                                                       num_warps=w, num_stages=st)
                fn(); same = torch.equal(o2, o)
            ms = do_bench(fn, warmup=10, rep=150)
            print("TILE", json.dumps(dict(kernel=kern, cfg=[P, N, w, st], ms=round(ms, 4), same_as_main=same)), flush=True)
        except Exception as e:
            print("TILE", json.dumps(dict(kernel=kern, cfg=[P, N, w, st], error=repr(e)[:200])), flush=True)
