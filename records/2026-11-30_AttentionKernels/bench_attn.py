"""Experiment (not part of the project): attention of one real reference micro-batch (65,536 packed tokens,
6 heads x 128), forward + backward, FlexAttention (the trainer's block mask) against FlashAttention-2 varlen
(torch.nn.attention.varlen.varlen_attn), with and without deterministic backward, exact and padded cu_seqlens.
python3 exp/bench_attn.py   (from the checkout root, data/reference present)"""
import inspect, json, os, sys, time
import torch
sys.path.insert(0, os.getcwd())
import train_plm as tp
from torch.nn.attention.flex_attention import flex_attention
from triton.testing import do_bench


def out(tag, **kw):
    print(tag, json.dumps(kw), flush=True)


dev = torch.device("cuda")
bf = torch.bfloat16
try:
    import torch.nn.attention.varlen as vl
    out("VARLEN", sig=str(inspect.signature(vl.varlen_attn)), torch=torch.__version__)
except Exception as e:
    vl = None
    out("VARLEN", error=repr(e)[:300])
out("ATTN_API", names=[n for n in dir(torch.nn.attention) if not n.startswith("__")])

cfg = tp.parse_config(["--preset", "reference"], has_gpu=True)
loader = tp.PackedLoader(tp.resolve_files(cfg.train_files, "train"), cfg, 0, 1, dev, 0)
for _ in range(3):  # the third micro-batch (the first two are like any other; keeps it off the file start)
    tokens, starts, g = loader.next()
T, H, d = tokens.numel(), 6, 128
doc, pos = tp.document_ids(starts)
edges = torch.cat([starts.nonzero()[:, 0], torch.tensor([T], device=dev)])
lengths = edges.diff()
N, maxlen = lengths.numel(), int(lengths.max())
cu = torch.zeros(N + 1, dtype=torch.int32, device=dev)
cu[1:] = lengths.cumsum(0)
CAP = T // 64
cu_pad = torch.cat([cu, cu[-1:].expand(CAP - N)])
sumsq = float((lengths.double() ** 2).sum())
flops = 4 * sumsq * d * H * 3.5  # useful FLOPs fwd + bwd (bwd = 2.5 x fwd)
out("BATCH", T=T, sequences=N, max_len=maxlen, mean_len=round(T / N, 1), cap=CAP,
    useful_GFLOP=round(flops / 1e9, 1))

torch.manual_seed(0)
q0, k0, v0 = (torch.randn(T, H, d, device=dev, dtype=bf) for _ in range(3))
go = torch.randn(T, H, d, device=dev, dtype=bf)
mask = tp.document_block_mask(doc, 0)


def flex(q, k, v, m):
    y = flex_attention(q.transpose(0, 1)[None], k.transpose(0, 1)[None], v.transpose(0, 1)[None], block_mask=m)
    return y[0].transpose(0, 1)


flex_c = torch.compile(flex, dynamic=False)
fns = {"flex": lambda q, k, v: flex_c(q, k, v, mask)}
if vl is not None:
    fns["fa2_exact"] = lambda q, k, v: vl.varlen_attn(q, k, v, cu, cu, maxlen, maxlen)
    fns["fa2_pad_max1024"] = lambda q, k, v: vl.varlen_attn(q, k, v, cu_pad, cu_pad, 1024, 1024)
    fns["fa2_pad_exactmax"] = lambda q, k, v: vl.varlen_attn(q, k, v, cu_pad, cu_pad, maxlen, maxlen)
    comp = torch.compile(lambda q, k, v, c: vl.varlen_attn(q, k, v, c, c, 1024, 1024), dynamic=False, fullgraph=True)
    fns["fa2_pad_compiled"] = lambda q, k, v: comp(q, k, v, cu_pad)

ref = None
for det in (False, True):
    torch.use_deterministic_algorithms(det)
    for name, f in fns.items():
        if det and name == "flex":
            continue
        try:
            q, k, v = (t.clone().requires_grad_() for t in (q0, k0, v0))
            t0 = time.time()
            y = f(q, k, v)
            y.backward(go)
            torch.cuda.synchronize()
            first = time.time() - t0
            grads = [t.grad.clone() for t in (q, k, v)]
            for t in (q, k, v):
                t.grad = None
            y2 = f(q, k, v)
            y2.backward(go)
            same = all(torch.equal(a, t.grad) for a, t in zip(grads, (q, k, v))) and torch.equal(y, y2)
            if ref is None:
                ref = (y.detach().float(), [a.float() for a in grads])
            diff = float((y.detach().float() - ref[0]).abs().max())
            gdiff = max(float((a.float() - b).abs().max()) for a, b in zip(grads, ref[1]))

            def fb():
                f(q, k, v).backward(go)
            ms = do_bench(fb, warmup=25, rep=300, grad_to_none=[q, k, v])
            with torch.no_grad():
                fwd = do_bench(lambda: f(q, k, v), warmup=25, rep=200)
            out("ATTN", name=name, deterministic=det, fwdbwd_ms=round(ms, 4), fwd_ms=round(fwd, 4),
                per_step_ms=round(ms * 192, 1), useful_TF=round(flops / ms / 1e9, 1), first_call_s=round(first, 1),
                bitwise_repeat=same, max_abs_diff_out_vs_flex=diff, max_abs_diff_grad_vs_flex=gdiff)
        except Exception as e:
            out("ATTN", name=name, deterministic=det, error=repr(e)[:500])
torch.use_deterministic_algorithms(False)

# cuDNN's attention forward with ragged offsets (the backend varlen_attn has but does not pick): forward only
try:
    q, k, v = q0, k0, v0
    r = torch.ops.aten._cudnn_attention_forward(q, k, v, None, cu, cu, maxlen, maxlen, True, 0.0, False, False)
    diff = float((r[0].float() - ref[0]).abs().max())
    fwd = do_bench(lambda: torch.ops.aten._cudnn_attention_forward(q, k, v, None, cu, cu, maxlen, maxlen, True, 0.0,
                                                                   False, False), warmup=25, rep=200)
    out("ATTN", name="cudnn_fwd_only", fwd_ms=round(fwd, 4), max_abs_diff_out_vs_flex=diff)
except Exception as e:
    out("ATTN", name="cudnn_fwd_only", error=repr(e)[:500])
