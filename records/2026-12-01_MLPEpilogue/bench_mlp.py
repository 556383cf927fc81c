"""Bench (issue 3): the MLP's FP8 path as in train_plm (cuBLAS row-wise products + inductor's ReLU² passes) against
exp/mlp_fp8.py (ReLU² and the casts in a Triton product's epilogue, block-scaled proj / fc-input-gradient products).
python3 exp/bench_mlp.py [--small]  (--small: a CPU check under TRITON_INTERPRET=1)"""
import os, sys, json
import torch
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import triton
import mlp_fp8 as mf

SMALL = "--small" in sys.argv
DEV = "cpu" if SMALL else "cuda"
triton.set_allocator(lambda size, align, stream: torch.empty(size, device=DEV, dtype=torch.int8))


def rowwise(t):
    s = t.abs().amax(-1, keepdim=True).float().clamp_min(1e-30) / 448.0
    return (t.float() / s).to(torch.float8_e4m3fn).contiguous(), s


def smm(a8, sa, b8, sb):
    if a8.is_cuda:
        return torch._scaled_mm(a8, b8.t(), scale_a=sa, scale_b=sb.t(), out_dtype=torch.bfloat16, use_fast_accum=True)
    return ((a8.float() * sa) @ (b8.float() * sb).t()).bfloat16()


def rel(a, b):
    return float((a.float() - b.float()).norm() / b.float().norm())


def main():
    torch.manual_seed(0)
    M, D, F = (65536, 768, 1536) if not SMALL else (256, 128, 256)
    x = torch.randn(M, D, device=DEV).bfloat16()  # RMSNorm's output: unit RMS rows
    wfc = (torch.rand(F, D, device=DEV) * 2 - 1) * 0.5 * (3 / D) ** 0.5
    wpj = (torch.rand(D, F, device=DEV) * 2 - 1) * 0.5 * (3 / F) ** 0.5
    g = (torch.randn(M, D, device=DEV) * 1e-3).bfloat16()
    x8, xs = rowwise(x)
    g8, gs = rowwise(g)
    wfc8, wfcs = rowwise(wfc.bfloat16())
    wpj8, wpjs = rowwise(wpj.bfloat16())
    wpjt8, wpjts = rowwise(wpj.bfloat16().t())
    wfct8, wfcts = rowwise(wfc.bfloat16().t())
    wpj8b, wpjsb = mf.blocks_128x128(wpj.bfloat16())
    wfct8b, wfctsb = mf.blocks_128x128(wfc.bfloat16().t().contiguous())
    # exact float32 reference
    h_ref = x.float() @ wfc.bfloat16().float().t()
    a_ref = h_ref.clamp_min(0).square()
    y_ref = a_ref @ wpj.bfloat16().float().t()
    da_ref = g.float() @ wpj.bfloat16().float()
    dh_ref = da_ref * 2 * h_ref.clamp_min(0)
    dx_ref = dh_ref @ wfc.bfloat16().float()
    comp = (lambda f: f) if SMALL else torch.compile

    relu_fwd = comp(lambda h: (lambda a: (a,) + rowwise(a))(torch.relu(h).square()))
    relu_bwd = comp(lambda da, h: (lambda dh: (dh,) + rowwise(dh))((da.float() * 2 * torch.relu(h.float())).bfloat16()))

    def main_fwd():
        h = smm(x8, xs, wfc8, wfcs)
        a, a8, as_ = relu_fwd(h)
        return h, a, smm(a8, as_, wpj8, wpjs)

    def main_bwd(h):
        da = smm(g8, gs, wpjt8, wpjts)
        dh, dh8, dhs = relu_bwd(da, h)
        return dh, smm(dh8, dhs, wfct8, wfcts)

    def new_fwd(tiles=(128, 256, 128, 8, 3, 8)):
        a, a8, as_ = mf.mlp_fp8_product(x8, xs, wfc8, wfcs, tiles=tiles)
        return a, mf.block_mm(a8, as_, wpj8b, wpjsb)

    def new_bwd(a, tiles=(128, 256, 128, 8, 3, 8)):
        dh, dh8, dhs = mf.mlp_fp8_product(g8, gs, wpjt8, wpjts, aux=a, tiles=tiles)
        return dh, mf.block_mm(dh8, dhs, wfct8b, wfctsb)

    small_tiles = (64, 128, 64, 8, 2, 4)
    t = small_tiles if SMALL else (128, 256, 128, 8, 3, 8)
    h, a_m, y_m = main_fwd()
    dh_m, dx_m = main_bwd(h)
    a_n, y_n = new_fwd(t)
    dh_n, dx_n = new_bwd(a_n, t)
    res = dict(a_main=rel(a_m, a_ref), a_new=rel(a_n, a_ref), a_new_vs_main=rel(a_n, a_m),
               y_main=rel(y_m, y_ref), y_new=rel(y_n, y_ref), dh_main=rel(dh_m, dh_ref), dh_new=rel(dh_n, dh_ref),
               dx_main=rel(dx_m, dx_ref), dx_new=rel(dx_n, dx_ref))
    print("ERR", json.dumps(res), flush=True)
    if SMALL:
        return
    from triton.testing import do_bench
    T = {}
    T["main_fc"] = lambda: smm(x8, xs, wfc8, wfcs)
    T["main_relu_fwd_pass"] = lambda: relu_fwd(h)
    a8m, asm = rowwise(a_m)
    T["main_proj_rowwise"] = lambda: smm(a8m, asm, wpj8, wpjs)
    T["main_fwd_total"] = main_fwd
    T["main_bwd_total"] = lambda: main_bwd(h)
    a8n, asn = mf.blocks_1x128(a_n)
    T["new_proj_block"] = lambda: mf.block_mm(a8n, asn, wpj8b, wpjsb)
    for tt in ((128, 256, 128, 8, 3, 8), (128, 128, 128, 8, 4, 8)):
        T[f"new_fused_fwd_{tt}"] = lambda tt=tt: mf.mlp_fp8_product(x8, xs, wfc8, wfcs, tiles=tt)
        T[f"new_fused_bwd_{tt}"] = lambda tt=tt: mf.mlp_fp8_product(g8, gs, wpjt8, wpjts, aux=a_n, tiles=tt)
    T["new_fwd_total"] = new_fwd
    T["new_bwd_total_bn128"] = lambda: new_bwd(a_n, (128, 128, 128, 8, 4, 8))
    T["new_bwd_total"] = lambda: new_bwd(a_n)
    for name, fn in T.items():
        try:
            fn()
            torch.cuda.synchronize()
            print("TIME", json.dumps(dict(variant=name, ms=round(do_bench(fn, warmup=25, rep=200, return_mode="median"), 4))), flush=True)
        except Exception as e:
            print("TIME_FAILED", json.dumps(dict(variant=name, error=repr(e)[:300])), flush=True)


if __name__ == "__main__":
    main()
