"""Experiment (issue 3): doc_attention of this checkout's train_plm.py (dQ pass first with delta inside it,
no mask in tiles inside one sequence) against main's (exp/train_plm_main.py = git show HEAD:train_plm.py) on
one real reference micro-batch (65,536 packed tokens, 6 heads x 128): kernel times (torch.profiler, mean of
10 forward + backward passes), forward + backward time (do_bench median), errors between the two and against
a float32 segment_attention on the first 8,192 tokens, bits across two runs. python3 exp/bench_attn.py"""
import importlib.util, json, os, sys
import torch
sys.path.insert(0, os.getcwd())
import train_plm as tp
spec = importlib.util.spec_from_file_location("train_plm_main", "exp/train_plm_main.py")
tpm = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tpm)
from triton.testing import do_bench
from torch.profiler import profile, ProfilerActivity


def out(tag, **kw):
    print(tag, json.dumps(kw), flush=True)


dev, bf = torch.device("cuda"), torch.bfloat16
cfg = tp.parse_config(["--preset", "reference"], has_gpu=True)
loader = tp.PackedLoader(tp.resolve_files(cfg.train_files, "train"), cfg, 0, 1, dev, 0)
for _ in range(3):
    tokens, starts, g = loader.next()
T, H, D = tokens.numel(), 6, 128
doc, pos = tp.document_ids(starts)
doc, lo, hi = tp.document_ranges(doc, pos, 0)
edges = torch.cat([starts.nonzero()[:, 0], torch.tensor([T], device=dev)])
lengths = edges.diff()
sumsq = float((lengths.double() ** 2).sum())
flops = 4 * sumsq * D * H * 3.5  # forward 2 products, backward 5 (useful entries only)
# tiles inside one sequence: the share the new kernels compute without a mask
dc, lc, hc = doc.tolist(), lo.tolist(), hi.tolist()
full = n_tiles = 0
for b in range(T // 64):
    for kb in range(lc[b] // 64, hc[b] // 64):
        n_tiles += 1
        full += int(dc[b * 64] == dc[kb * 64 + 63] and dc[kb * 64] == dc[b * 64 + 63])
out("BATCH", T=T, sequences=lengths.numel(), max_len=int(lengths.max()), useful_GFLOP=round(flops / 1e9, 1),
    tiles_per_head=n_tiles, unmasked_tiles=full, unmasked_fraction=round(full / n_tiles, 3))
torch.manual_seed(0)
inv = 1.0 / 10000 ** (torch.arange(0, D, 2, device=dev).float() / D)
ang = (pos[:, None].float() * inv[None])[:, None]
cos, sin = ang.cos(), ang.sin()
qkv = torch.randn(T, 3 * H * D, device=dev, dtype=bf)
q0, k0, v0 = tp.qkv_prep(qkv, None, None, cos, sin, H)  # QK-normed, as in the model
go = torch.randn(T, H, D, device=dev, dtype=bf)


def run(mod):
    q, k, v = (t.detach().clone().requires_grad_(True) for t in (q0, k0, v0))
    o = mod.doc_attention(q, k, v, doc, lo, hi, 0)
    grads = torch.autograd.grad(o, (q, k, v), go)
    return (o,) + grads


res = {}
for name, mod in (("main", tpm), ("new", tp)):
    a, b = run(mod), run(mod)
    res[name] = a
    out("BITS", code=name, same_bits_twice=all(torch.equal(x, y) for x, y in zip(a, b)))
rel = lambda a, b: float((a.float() - b.float()).norm() / b.float().norm())
out("NEW_VS_MAIN", **{n: rel(x, y) for n, x, y in zip(("o", "dq", "dk", "dv"), res["new"], res["main"])})
# float32 reference on the first 8,192 tokens (whole sequences: cut at a sequence start)
cut = int(edges[edges <= 8192].max())
L = [int(x) for x in lengths[: int((edges[1:] <= cut).sum())]]
qf, kf, vf = (t[:cut].float().detach().requires_grad_(True) for t in (q0, k0, v0))
of = tp.segment_attention(*(t.transpose(0, 1)[None] for t in (qf, kf, vf)), L, 0)[0].transpose(0, 1)
gf = torch.autograd.grad(of, (qf, kf, vf), go[:cut].float())
for name in ("main", "new"):
    out("VS_FP32_first_tokens", code=name, tokens=cut,
        **{n: rel(x[:cut], y) for n, x, y in zip(("o", "dq", "dk", "dv"), res[name], (of,) + gf)})
for name, mod in (("main", tpm), ("new", tp)):
    q, k, v = (t.detach().clone().requires_grad_(True) for t in (q0, k0, v0))
    fwd = do_bench(lambda: mod.doc_attention(q, k, v, doc, lo, hi, 0), warmup=50, rep=300, return_mode="median")
    both = do_bench(lambda: torch.autograd.grad(mod.doc_attention(q, k, v, doc, lo, hi, 0), (q, k, v), go),
                    warmup=50, rep=300, return_mode="median")
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(10):
            torch.autograd.grad(mod.doc_attention(q, k, v, doc, lo, hi, 0), (q, k, v), go)
        torch.cuda.synchronize()
    kern = {}
    for e in prof.key_averages():
        if e.device_time_total > 0 and "attn" in e.key:
            kern[e.key[:40]] = round(e.device_time_total / 10 / 1e3, 4)
    out("TIME_ms", code=name, forward=round(fwd, 4), forward_backward=round(both, 4),
        useful_TFLOPs=round(flops / both / 1e9, 1), kernels=kern, kernels_sum=round(sum(kern.values()), 4))
