"""Experiment: FlexAttention kernel options on one real reference micro-batch (65,536 tokens, 6 x 128), the
trainer's block mask. python3 exp/flex_sweep.py fwd|bwd|pair OUT.json [IN_fwd.json IN_bwd.json]
fwd: forward-only ms per option set; bwd: forward + backward ms (default forward); pair: the best of each together."""
import json, os, sys, time
import torch
sys.path.insert(0, os.getcwd())
import train_plm as tp
from torch.nn.attention.flex_attention import flex_attention
from triton.testing import do_bench
torch._inductor.config.deterministic = True
dev = torch.device("cuda"); bf = torch.bfloat16
cfg = tp.parse_config(["--preset", "reference"], has_gpu=True)
loader = tp.PackedLoader(tp.resolve_files(cfg.train_files, "train"), cfg, 0, 1, dev, 0)
for _ in range(3):
    tokens, starts, g = loader.next()
T, H, d = tokens.numel(), 6, 128
doc, pos = tp.document_ids(starts)
mask = tp.document_block_mask(doc, 0)
torch.manual_seed(0)
q0, k0, v0 = (torch.randn(T, H, d, device=dev, dtype=bf) for _ in range(3))
go = torch.randn(T, H, d, device=dev, dtype=bf)

def run(opts):
    torch._dynamo.reset()
    f = torch.compile(lambda q, k, v, m: flex_attention(q.transpose(0, 1)[None], k.transpose(0, 1)[None],
                      v.transpose(0, 1)[None], block_mask=m, kernel_options=opts or None)[0].transpose(0, 1), dynamic=False)
    q, k, v = (t.clone().requires_grad_() for t in (q0, k0, v0))
    t0 = time.time()
    y = f(q, k, v, mask); y.backward(go); torch.cuda.synchronize()
    first = time.time() - t0
    gq = q.grad.float()
    def fb():
        f(q, k, v, mask).backward(go)
    ms = do_bench(fb, warmup=25, rep=250, grad_to_none=[q, k, v])
    with torch.no_grad():
        fwd = do_bench(lambda: f(q, k, v, mask), warmup=25, rep=200)
    return dict(fwdbwd_ms=round(ms, 4), fwd_ms=round(fwd, 4), bwd_ms=round(ms - fwd, 4), compile_s=round(first, 1)), y.detach().float(), gq

def sweep(cands, key):
    res, ref = [], None
    for opts in cands:
        try:
            r, y, gq = run(opts)
            if ref is None:
                ref = (y, gq)
            r["max_diff_out"] = float((y - ref[0]).abs().max()); r["max_diff_dq"] = float((gq - ref[1]).abs().max())
        except Exception as e:
            r = dict(error=repr(e)[:200])
        r["opts"] = opts
        print("FLEX", json.dumps(r), flush=True)
        res.append(r)
    ok = [r for r in res if "error" not in r and r["max_diff_out"] < 0.05 and r["max_diff_dq"] < 0.5]
    return res, min(ok, key=lambda r: r[key])

mode, outp = sys.argv[1], sys.argv[2]
if mode == "fwd":
    cands = [{}] + [dict(fwd_BLOCK_M=m, fwd_BLOCK_N=n, fwd_num_stages=s, fwd_num_warps=w) for m, n, s, w in
                    [(128, 64, 3, 8), (128, 128, 2, 8), (128, 128, 3, 8), (128, 64, 3, 4), (128, 64, 4, 8), (128, 64, 2, 8), (64, 128, 3, 4), (64, 64, 3, 4), (128, 128, 1, 8)]]
    res, best = sweep(cands, "fwd_ms")
elif mode == "bwd":
    cands = [{}] + [dict(bwd_BLOCK_M1=a, bwd_BLOCK_N1=b, bwd_BLOCK_M2=c, bwd_BLOCK_N2=e, bwd_num_stages=s, bwd_num_warps=w)
                    for a, b, c, e, s, w in [(64, 128, 128, 64, 3, 8), (32, 128, 128, 32, 3, 4), (32, 128, 128, 32, 3, 8), (64, 64, 64, 64, 3, 4),
                                             (64, 128, 128, 64, 2, 8), (64, 128, 128, 64, 4, 8), (64, 64, 64, 64, 4, 4), (32, 64, 64, 32, 3, 4),
                                             (64, 128, 128, 64, 3, 4), (32, 128, 128, 32, 4, 4), (64, 64, 64, 64, 2, 4)]]
    res, best = sweep(cands, "bwd_ms")
else:
    bf_, bb_ = (json.load(open(p))["best"]["opts"] for p in sys.argv[3:5])
    res, best = sweep([{}, {**bf_, **bb_}], "fwdbwd_ms")
json.dump(dict(results=res, best=best), open(outp, "w"))
print("BEST", mode, json.dumps(best), flush=True)
