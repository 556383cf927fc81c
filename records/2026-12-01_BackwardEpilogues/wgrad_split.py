"""Experiment (issue 3): the weight-gradient products of the reference preset (K = 65,536 tokens, bf16 operands,
fp32 out, as mm_out computes them: g.T @ x) as one torch.mm against an explicit split over K (torch.bmm over c
chunks, then a sum over the chunks, deterministic), and the transposed product x.T @ g. TFLOP/s from do_bench
medians. The output tiles of a 2,304 x 768 product fill 108 of the H200's 132 multiprocessors at 128 x 128:
does cuBLAS lose to that, and would more, smaller problems fill them better?
python3 exp/wgrad_split.py (GPU)"""
import json
import torch
from triton.testing import do_bench

K = 65536
torch.manual_seed(0)
for M, N, what in [(2304, 768, "qkv"), (1536, 768, "fc"), (768, 1536, "proj"), (768, 768, "out")]:
    g = torch.randn(K, M, device="cuda", dtype=torch.bfloat16)
    x = torch.randn(K, N, device="cuda", dtype=torch.bfloat16)
    flop = 2 * M * N * K
    V = {"mm": lambda: torch.mm(g.t(), x, out_dtype=torch.float32),
         "mm_transposed": lambda: torch.mm(x.t(), g, out_dtype=torch.float32),
         "mm_bf16_out": lambda: torch.mm(g.t(), x)}
    for c in (2, 3, 4, 6, 8, 16):
        if K % c:
            continue
        V[f"bmm_split{c}"] = lambda c=c: torch.bmm(g.view(c, K // c, M).transpose(1, 2), x.view(c, K // c, N),
                                                  out_dtype=torch.float32).sum(0)
    ref = V["mm"]().double()
    for name, fn in V.items():
        try:
            y = fn()
            err = float((y.double() - (ref.t() if name == "mm_transposed" else ref)).abs().max() / ref.abs().max())
            ms = do_bench(fn, warmup=25, rep=200, return_mode="median")
            print("WGRAD", json.dumps(dict(product=what, M=M, N=N, variant=name, ms=round(ms, 4),
                                           tflops=round(flop / ms / 1e9, 1), rel_err_vs_mm=err)), flush=True)
        except Exception as e:
            print("FAILED", json.dumps(dict(product=what, variant=name, error=repr(e)[:300])), flush=True)
