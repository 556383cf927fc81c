"""Experiment (issue 3): _mlp_fp8_kernel's forward epilogue without splitting the 128 x 256 tile into two
128-column halves (tl.permute + tl.split, which may go through shared memory): the block amax of a (BM, 2, 128)
reshape, one TMA store each of y (bf16) and y8 (e4m3) per tile. Also the floors: the product with a bf16 store
only, and with ReLU² + bf16 store. Reference shapes 65,536 x 768 -> 1,536; against train_plm's kernel: bits,
do_bench medians.
TRITON_INTERPRET=1 python3 exp/mlp_epi.py --small  (CPU)   |   python3 exp/mlp_epi.py  (GPU)"""
import json, os, sys
import torch
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor
sys.path.insert(0, os.getcwd())
import train_plm as tp

SMALL = "--small" in sys.argv


def out(tag, **kw):
    print(tag, json.dumps(kw), flush=True)


@triton.jit
def _fwd_v2(a_desc, b_desc, y_desc, y8_desc, SA, SB, YS, M, N, K, BM: tl.constexpr, BN: tl.constexpr,
            BK: tl.constexpr, GROUP_M: tl.constexpr, PROGRAMS: tl.constexpr, MODE: tl.constexpr):
    """MODE 0: y, y8, scales without the split; 1: the product + bf16 store of it; 2: + ReLU² (bf16 store)."""
    tiles_m, tiles_n = tl.cdiv(M, BM), tl.cdiv(N, BN)
    in_group = GROUP_M * tiles_n
    for tile in tl.range(tl.program_id(0), tiles_m * tiles_n, PROGRAMS, flatten=True):
        first_m = tile // in_group * GROUP_M
        size_m = min(tiles_m - first_m, GROUP_M)
        om = (first_m + tile % size_m) * BM
        on = (tile % in_group) // size_m * BN
        acc = tl.zeros((BM, BN), dtype=tl.float32)
        for k in range(0, K, BK):
            acc = tl.dot(a_desc.load([om, k]), b_desc.load([on, k]).T, acc)
        rows = om + tl.arange(0, BM)
        acc = acc * tl.load(SA + rows)[:, None] * tl.load(SB + on + tl.arange(0, BN))[None, :]
        if MODE == 1:
            y_desc.store([om, on], acc.to(tl.bfloat16))
        else:
            y = tl.maximum(acc, 0.0)
            yb = (y * y).to(tl.bfloat16)
            y_desc.store([om, on], yb)
            if MODE == 0:
                y3 = tl.reshape(yb.to(tl.float32), (BM, BN // 128, 128))
                amax = tl.maximum(tl.max(tl.abs(y3), 2), 1e-30)  # (BM, BN // 128)
                y8 = tl.reshape(y3 * (448.0 / amax)[:, :, None], (BM, BN)).to(tl.float8e4nv)
                y8_desc.store([om, on], y8)
                j = tl.arange(0, BN // 128)
                tl.store(YS + (on // 128 + j)[None, :] * M + rows[:, None], amax / 448.0)


def fwd_v2(a8, sa, b8, sb, mode=0, tiles=None):
    (M, K), N = a8.shape, b8.size(0)
    BM, BN, BK, group, stages, warps = tiles or tp.MLP_FP8_TILES["forward"]
    y = a8.new_empty(M, N, dtype=torch.bfloat16)
    y8 = a8.new_empty(M, N, dtype=torch.float8_e4m3fn)
    ys = a8.new_empty(N // 128, M, dtype=torch.float32)
    desc = TensorDescriptor.from_tensor
    sms = torch.cuda.get_device_properties(a8.device).multi_processor_count if a8.is_cuda else 4
    programs = min(sms, (M // BM) * (N // BN))
    _fwd_v2[(programs,)](desc(a8, [BM, BK]), desc(b8, [BN, BK]), desc(y, [BM, BN]), desc(y8, [BM, BN]), sa, sb, ys,
                         M, N, K, BM, BN, BK, group, programs, mode, num_warps=warps, num_stages=stages)
    return y, y8, ys


def main():
    dev = "cpu" if SMALL else "cuda"
    torch.manual_seed(0)
    M, D, F = (256, 128, 512) if SMALL else (65536, 768, 1536)
    x = torch.randn(M, D, device=dev).bfloat16()
    w = ((torch.rand(F, D, device=dev) * 2 - 1) * 0.5 * (3 / D) ** 0.5).bfloat16()
    x8, xs = tp.fp8_rowwise(x)
    w8, ws = tp.fp8_rowwise(w)
    ref = tp.mlp_fp8_triton(x8, xs, w8, ws)
    for t in [None] + ([] if SMALL else [(128, 256, 128, 8, 2, 8), (128, 256, 64, 8, 3, 8)]):
        try:
            got = fwd_v2(x8, xs, w8, ws, 0, t)
        except Exception as e:
            out("FAILED", tiles=t, error=repr(e)[:200])
            continue
        out("BITS_VS_MAIN", tiles=t, y=torch.equal(got[0], ref[0]),
            y8=torch.equal(got[1].view(torch.uint8), ref[1].view(torch.uint8)), ys=torch.equal(got[2], ref[2]))
    if SMALL:
        return
    from triton.testing import do_bench
    V = {"main": lambda: tp.mlp_fp8_triton(x8, xs, w8, ws), "v2": lambda: fwd_v2(x8, xs, w8, ws, 0),
         "v2_(128,256,128,8,2,8)": lambda: fwd_v2(x8, xs, w8, ws, 0, (128, 256, 128, 8, 2, 8)),
         "v2_(128,256,64,8,3,8)": lambda: fwd_v2(x8, xs, w8, ws, 0, (128, 256, 64, 8, 3, 8)),
         "v2_(128,256,64,8,4,8)": lambda: fwd_v2(x8, xs, w8, ws, 0, (128, 256, 64, 8, 4, 8)),
         "floor_product_bf16_store": lambda: fwd_v2(x8, xs, w8, ws, 1),
         "floor_relu2_bf16_store": lambda: fwd_v2(x8, xs, w8, ws, 2),
         "cublas_scaled_mm": lambda: torch._scaled_mm(x8, w8.t(), scale_a=xs, scale_b=ws.t(), out_dtype=torch.bfloat16,
                                                      use_fast_accum=True),
         "main_again": lambda: tp.mlp_fp8_triton(x8, xs, w8, ws)}
    a = ref[0]  # the backward's aux input: relu(h)² (shapes as the proj input gradient's: N 1,536, K 768)
    main_bwd = tp.MLP_FP8_TILES["backward"]

    def bwd(t):
        tp.MLP_FP8_TILES["backward"] = t
        try:
            return tp.mlp_fp8_triton(x8, xs, w8, ws, a)
        finally:
            tp.MLP_FP8_TILES["backward"] = main_bwd
    ref_b = bwd(main_bwd)
    for t in [main_bwd, (128, 256, 128, 8, 3, 8), (128, 256, 128, 8, 2, 8), (128, 128, 128, 8, 3, 8),
              (128, 128, 128, 8, 5, 8), (128, 128, 128, 8, 4, 4), (128, 256, 64, 8, 4, 8), main_bwd]:
        V[f"bwd_{t}"] = lambda t=t: bwd(t)
    for name, fn in V.items():
        try:
            fn()
            torch.cuda.synchronize()
            if name.startswith("bwd_"):
                got = fn()
                out("BITS_BWD", variant=name, same=all(torch.equal(g.view(torch.uint8), r.view(torch.uint8))
                                                      for g, r in zip(got, ref_b)))
            out("TIME", variant=name, ms=round(do_bench(fn, warmup=30, rep=300, return_mode="median"), 4))
        except Exception as e:
            out("TIME_FAILED", variant=name, error=repr(e)[:300])


if __name__ == "__main__":
    main()
