"""Bench (issue 3): the MLP's backward FP8 kernel (train_plm._mlp_fp8_kernel, BACKWARD) against a copy whose
epilogue input a (the forward's ReLU² output) is loaded by TMA before the product instead of after it.
python3 exp/bench_mlp_bwd.py [--small]  (--small: a CPU check under TRITON_INTERPRET=1)"""
import os, sys, json
import torch
sys.path.insert(0, os.getcwd())
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor
import train_plm as tp


@triton.jit
def _half(x, a, rows, om, c0, y_desc, y8_desc, YS, M):
    y = x * (2.0 * tl.sqrt(a.to(tl.float32)))
    yb = y.to(tl.bfloat16)
    y_desc.store([om, c0], yb)
    amax = tl.maximum(tl.max(tl.abs(yb.to(tl.float32)), 1), 1e-30)
    y8_desc.store([om, c0], (yb.to(tl.float32) * (448.0 / amax)[:, None]).to(tl.float8e4nv))
    tl.store(YS + (c0 // 128) * M + rows, amax / 448.0)


@triton.jit
def _bwd_prefetch(a_desc, b_desc, y_desc, y8_desc, aux_desc, SA, SB, YS, M, N, K, BM: tl.constexpr,
                  BN: tl.constexpr, BK: tl.constexpr, GROUP_M: tl.constexpr, PROGRAMS: tl.constexpr):
    tiles_m, tiles_n = tl.cdiv(M, BM), tl.cdiv(N, BN)
    in_group = GROUP_M * tiles_n
    for tile in tl.range(tl.program_id(0), tiles_m * tiles_n, PROGRAMS, flatten=True):
        first_m = tile // in_group * GROUP_M
        size_m = min(tiles_m - first_m, GROUP_M)
        om = (first_m + tile % size_m) * BM
        on = (tile % in_group) // size_m * BN
        aux = aux_desc.load([om, on])  # issued before the product: its latency hides behind it
        acc = tl.zeros((BM, BN), dtype=tl.float32)
        for k in range(0, K, BK):
            acc = tl.dot(a_desc.load([om, k]), b_desc.load([on, k]).T, acc)
        rows = om + tl.arange(0, BM)
        acc = acc * tl.load(SA + rows)[:, None] * tl.load(SB + on + tl.arange(0, BN))[None, :]
        _half(acc, aux, rows, om, on, y_desc, y8_desc, YS, M)


def bwd_prefetch(a8, sa, b8, sb, aux, tiles):
    (M, K), N = a8.shape, b8.size(0)
    BM, BN, BK, group, stages, warps = tiles
    y = a8.new_empty(M, N, dtype=torch.bfloat16)
    y8 = a8.new_empty(M, N, dtype=torch.float8_e4m3fn)
    ys = a8.new_empty(N // 128, M, dtype=torch.float32)
    desc = TensorDescriptor.from_tensor
    sms = torch.cuda.get_device_properties(a8.device).multi_processor_count if a8.is_cuda else 4
    programs = min(sms, (M // BM) * (N // BN))
    _bwd_prefetch[(programs,)](desc(a8, [BM, BK]), desc(b8, [BN, BK]), desc(y, [BM, 128]), desc(y8, [BM, 128]),
                               desc(aux, [BM, 128]), sa, sb, ys, M, N, K, BM, BN, BK, group, programs,
                               num_warps=warps, num_stages=stages)
    return y, y8, ys


def main():
    small = "--small" in sys.argv
    dev = "cpu" if small else "cuda"
    torch.manual_seed(0)
    M, D, F = (256, 128, 256) if small else (65536, 768, 1536)
    g8, gs = tp.fp8_rowwise((torch.randn(M, D, device=dev) * 1e-3).bfloat16())
    w = ((torch.rand(D, F, device=dev) * 2 - 1) * 0.5 * (3 / F) ** 0.5).bfloat16()
    wt8, wts = tp.fp8_rowwise(w.t())
    aux = torch.rand(M, F, device=dev).bfloat16()
    tiles = (64, 128, 64, 2, 2, 4) if small else tp.MLP_FP8_TILES["backward"]
    if small:
        tp.MLP_FP8_TILES["backward"] = tiles
    want = tp.mlp_fp8_triton(g8, gs, wt8, wts, aux)
    got = bwd_prefetch(g8, gs, wt8, wts, aux, tiles)
    print("SAME", json.dumps({n: bool(torch.equal(a.float(), b.float())) for n, a, b in zip(("y", "y8", "ys"), got, want)}))
    if small:
        return
    from triton.testing import do_bench
    T = {"main": lambda: tp.mlp_fp8_triton(g8, gs, wt8, wts, aux)}
    for t in (tiles, (128, 128, 128, 8, 3, 8), (128, 128, 128, 16, 4, 8), (128, 128, 64, 8, 5, 8)):
        T[f"prefetch_{t}"] = lambda t=t: bwd_prefetch(g8, gs, wt8, wts, aux, t)
    for name, fn in T.items():
        try:
            fn()
            torch.cuda.synchronize()
            print("TIME", json.dumps(dict(variant=name, ms=round(do_bench(fn, warmup=25, rep=200, return_mode="median"), 4))), flush=True)
        except Exception as e:
            print("TIME_FAILED", json.dumps(dict(variant=name, error=repr(e)[:300])), flush=True)


if __name__ == "__main__":
    main()
