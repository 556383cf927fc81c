"""Experiment (issue 3): cuDNN's ragged SDPA (aten._cudnn_attention_forward/backward with cum_seq offsets) and
FlashAttention-2 varlen against doc_attention on one real reference micro-batch; then FP8 block-scaled
(DeepSeek-V3 1x128 / 128x128) products against bf16 and row-wise FP8 for the block's shapes."""
import json, math, os, sys, time
import torch
sys.path.insert(0, os.getcwd())
import train_plm as tp
from triton.testing import do_bench

def out(tag, **kw):
    print(tag, json.dumps(kw), flush=True)

dev = torch.device("cuda")
bf = torch.bfloat16
cfg = tp.parse_config(["--preset", "reference"], has_gpu=True)
loader = tp.PackedLoader(tp.resolve_files(cfg.train_files, "train"), cfg, 0, 1, dev, 0)
for _ in range(3):
    tokens, starts, g = loader.next()
T, H, D = tokens.numel(), 6, 128
doc, pos = tp.document_ids(starts)
dl = tp.document_ranges(doc, pos, 0)
edges = torch.cat([starts.nonzero()[:, 0], torch.tensor([T], device=dev)])
lengths = edges.diff()
cu = edges.int().contiguous()
cu = torch.cat([torch.zeros(1, dtype=torch.int32, device=dev), cu[1:]]) if int(edges[0]) == 0 else torch.cat([torch.zeros(1, dtype=torch.int32, device=dev), cu])
mx = int(lengths.max())
sumsq = float((lengths.double() ** 2).sum())
flops_f, flops_b = 4 * sumsq * D * H, 4 * sumsq * D * H * 2.5
out("BATCH", T=T, sequences=lengths.numel(), max_len=mx, cu_len=cu.numel(), cu_last=int(cu[-1]))
torch.manual_seed(0)
q, k, v = (torch.randn(T, H, D, device=dev, dtype=bf) for _ in range(3))
q, k = (t / t.float().pow(2).mean(-1, keepdim=True).sqrt().to(bf) for t in (q, k))
go = torch.randn(T, H, D, device=dev, dtype=bf)

def bench(name, f):
    try:
        qq, kk, vv = (t.clone().requires_grad_() for t in (q, k, v))
        y = f(qq, kk, vv); y.backward(go); torch.cuda.synchronize()
        r1 = [y.detach().clone(), qq.grad.clone(), kk.grad.clone(), vv.grad.clone()]
        qq.grad = kk.grad = vv.grad = None
        y = f(qq, kk, vv); y.backward(go); torch.cuda.synchronize()
        r2 = [y.detach(), qq.grad, kk.grad, vv.grad]
        same = all(torch.equal(a, b) for a, b in zip(r1, r2))
        def fb():
            f(qq, kk, vv).backward(go)
        ms = do_bench(fb, warmup=25, rep=300, grad_to_none=[qq, kk, vv])
        with torch.no_grad():
            fwd = do_bench(lambda: f(q, k, v), warmup=25, rep=200)
        out("ATTN", name=name, fwdbwd_ms=round(ms, 4), fwd_ms=round(fwd, 4), bwd_ms=round(ms - fwd, 4),
            per_step_ms=round(ms * 192, 1), fwd_TFLOPs=round(flops_f / fwd / 1e9, 1),
            bwd_TFLOPs=round(flops_b / (ms - fwd) / 1e9, 1), same_bits_twice=same)
        return r1
    except Exception as e:
        import traceback; traceback.print_exc()
        out("ATTN", name=name, error=repr(e)[:800])

ref = bench("doc_attention", lambda a, b, c: tp.doc_attention(a, b, c, *dl))

def cudnn(a, b, c):
    return torch.ops.aten._cudnn_attention_forward(a, b, c, None, cu, cu, mx, mx, True, 0.0, False, False,
                                                   scale=D ** -0.5)[0]
def flash(a, b, c):
    return torch.ops.aten._flash_attention_forward(a, b, c, cu, cu, mx, mx, 0.0, False, False, scale=D ** -0.5)[0]

for name, f in (("cudnn", cudnn), ("flash2", flash)):
    r = bench(name, f)
    if r is not None and ref is not None:
        out("ERR", name=name, **{n: float((a.float() - b.float()).norm() / b.float().norm())
                                for n, a, b in zip(("o", "dq", "dk", "dv"), r, ref)})
for det in (True,):
    try:
        torch.use_deterministic_algorithms(True)
        bench("cudnn_deterministic", cudnn)
    except Exception as e:
        out("ATTN", name="cudnn_deterministic", error=repr(e)[:500])
    finally:
        torch.use_deterministic_algorithms(False)

# FP8 products of one block: bf16, row-wise FP8 (fast accum), block-scaled 1x128 x 128x128 and 1x128 x 1x128
e4 = torch.float8_e4m3fn
def prod(name, M, N, K):
    a = torch.randn(M, K, device=dev, dtype=bf); b = torch.randn(N, K, device=dev, dtype=bf)
    fl = 2 * M * N * K
    res = {"bf16": do_bench(lambda: a @ b.t(), warmup=10, rep=100)}
    a8, b8 = a.to(e4), b.to(e4)
    one = lambda *s: torch.ones(*s, device=dev)
    try:
        res["rowwise_fast"] = do_bench(lambda: torch._scaled_mm(a8, b8.t(), one(M, 1), one(1, N), out_dtype=bf,
                                                                use_fast_accum=True), warmup=10, rep=100)
        res["rowwise_slow"] = do_bench(lambda: torch._scaled_mm(a8, b8.t(), one(M, 1), one(1, N), out_dtype=bf),
                                       warmup=10, rep=100)
    except Exception as e:
        out("PROD_ERR", name=name, kind="rowwise", error=repr(e)[:300])
    sa = one(K // 128, M).t()  # (M, K/128), outer-dim-major
    for kind, sb in (("blk1x128_128x128", one(N // 128, K // 128).t()), ("blk1x128_1x128", one(N, K // 128).t().contiguous().t() if False else one(K // 128, N))):
        try:
            f = lambda: torch._scaled_mm(a8, b8.t(), sa, sb, out_dtype=bf)
            f()
            res[kind] = do_bench(f, warmup=10, rep=100)
        except Exception as e:
            out("PROD_ERR", name=name, kind=kind, error=repr(e)[:400])
    out("PROD", name=name, M=M, N=N, K=K, **{k: [round(v, 4), round(fl / v / 1e9)] for k, v in res.items()})

T8 = 65536
for name, M, N, K in (("qkv_fwd", T8, 2304, 768), ("qkv_dgrad", T8, 768, 2304), ("out_fwd", T8, 768, 768),
                      ("fc_fwd", T8, 1536, 768), ("proj_fwd", T8, 768, 1536),
                      ("qkv_wgrad", 2304, 768, T8), ("out_wgrad", 768, 768, T8), ("fc_wgrad", 1536, 768, T8),
                      ("proj_wgrad", 768, 1536, T8)):
    prod(name, M, N, K)
