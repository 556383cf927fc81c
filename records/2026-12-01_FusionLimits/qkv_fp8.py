"""Prototype (issue 3): the qkv product in FP8 with qkv_prep's forward (QK-norm, RoPE, value-embedding mix) in its
epilogue. One persistent Triton kernel: row-wise scaled e4m3 product, each output tile one head's 128 columns of q,
k or v; the epilogue writes the raw qkv (bf16, for qkv_prep's backward) and the prepared q, k, v (T, H, d).
python3 exp/qkv_fp8.py [--small]  (--small: a CPU check under TRITON_INTERPRET=1)"""
import os, sys, json
import torch
sys.path.insert(0, os.getcwd())
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor
import train_plm as tp


@triton.jit
def _qkv_fp8_kernel(a_desc, b_desc, qkv_desc, out_desc, SA, SB, TOK, VE, LAM, COS, SIN, M, K,
                    EPS: tl.constexpr, H: tl.constexpr, HD: tl.constexpr, BM: tl.constexpr, BK: tl.constexpr,
                    GROUP_M: tl.constexpr, PROGRAMS: tl.constexpr, HAS_VE: tl.constexpr, SPLIT: tl.constexpr,
                    FLATTEN: tl.constexpr, PRE: tl.constexpr):
    tiles_m, tiles_n = tl.cdiv(M, BM), 3 * H
    in_group = GROUP_M * tiles_n
    for tile in tl.range(tl.program_id(0), tiles_m * tiles_n, PROGRAMS, flatten=FLATTEN):
        first_m = tile // in_group * GROUP_M
        size_m = min(tiles_m - first_m, GROUP_M)
        om = (first_m + tile % size_m) * BM
        n = (tile % in_group) // size_m  # q heads, k heads, v heads
        on = n * HD
        rows = om + tl.arange(0, BM)
        sa = tl.load(SA + rows)[:, None]
        half = tl.arange(0, HD // 2)[None, :]
        is_qk = (tl.zeros((BM, HD // 2), tl.int32) + n) < 2 * H
        if PRE >= 1:  # the epilogue's inputs loaded before the product: their latency hides behind it
            c = tl.load(COS + rows[:, None] * (HD // 2) + half, mask=is_qk, other=1.0)
            s = tl.load(SIN + rows[:, None] * (HD // 2) + half, mask=is_qk, other=0.0)
            tok = tl.load(TOK + rows)
        if PRE >= 2 and HAS_VE:
            e = VE + tok[:, None] * (H * HD) + (n - 2 * H) * HD + half
            e1 = tl.load(e, mask=~is_qk, other=0.0)
            e2 = tl.load(e + HD // 2, mask=~is_qk, other=0.0)
        if SPLIT:  # two products of HD/2 columns: RoPE's halves without a register shuffle
            acc1 = tl.zeros((BM, HD // 2), dtype=tl.float32)
            acc2 = tl.zeros((BM, HD // 2), dtype=tl.float32)
            for k in range(0, K, BK):
                a = a_desc.load([om, k])
                acc1 = tl.dot(a, b_desc.load([on, k]).T, acc1)
                acc2 = tl.dot(a, b_desc.load([on + HD // 2, k]).T, acc2)
            x1 = (acc1 * sa * tl.load(SB + on + half)).to(tl.bfloat16).to(tl.float32)
            x2 = (acc2 * sa * tl.load(SB + on + HD // 2 + half)).to(tl.bfloat16).to(tl.float32)
        else:
            acc = tl.zeros((BM, HD), dtype=tl.float32)
            for k in range(0, K, BK):
                acc = tl.dot(a_desc.load([om, k]), b_desc.load([on, k]).T, acc)
            xb = (acc * sa * tl.load(SB + on + tl.arange(0, HD))[None, :]).to(tl.bfloat16)
            x1, x2 = tl.split(tl.permute(tl.reshape(xb.to(tl.float32), (BM, 2, HD // 2)), (0, 2, 1)))
        qkv_desc.store([om, on], x1.to(tl.bfloat16))
        qkv_desc.store([om, on + HD // 2], x2.to(tl.bfloat16))
        # no branches (the flattened loop cannot hold them): q and k tiles get RMSNorm + RoPE, v tiles the value
        # embedding's mix; each tile loads only its own inputs (masked loads)
        if PRE >= 0:  # PRE -1: the product and its raw store only (a diagnostic)
            if PRE == 0:
                c = tl.load(COS + rows[:, None] * (HD // 2) + half, mask=is_qk, other=1.0)
                s = tl.load(SIN + rows[:, None] * (HD // 2) + half, mask=is_qk, other=0.0)
                tok = tl.load(TOK + rows)
            r = tl.rsqrt((tl.sum(x1 * x1, 1) + tl.sum(x2 * x2, 1))[:, None] / HD + EPS)
            y1 = (x1 * c - x2 * s) * r
            y2 = (x1 * s + x2 * c) * r
            if HAS_VE:
                if PRE < 2:
                    e = VE + tok[:, None] * (H * HD) + (n - 2 * H) * HD + half
                    e1 = tl.load(e, mask=~is_qk, other=0.0)
                    e2 = tl.load(e + HD // 2, mask=~is_qk, other=0.0)
                lam0, lam1 = tl.load(LAM), tl.load(LAM + 1)
                v1 = lam0 * x1 + lam1 * e1.to(tl.float32)
                v2 = lam0 * x2 + lam1 * e2.to(tl.float32)
            else:
                v1, v2 = x1, x2
            at = n // H * M + om  # out (3, T, H, d) as (3T, D) rows
            out_desc.store([at, n % H * HD], tl.where(is_qk, y1, v1).to(tl.bfloat16))
            out_desc.store([at, n % H * HD + HD // 2], tl.where(is_qk, y2, v2).to(tl.bfloat16))


def qkv_fp8(x8, xs, w8, ws, tok, ve, lam, cos, sin, heads, tiles=(128, 128, 8, 4, 8, 0), flatten=True, pre=0):
    """x8 (T, D) e4m3 with xs (T, 1); w8 (3D, D) e4m3 with ws (3D, 1); tok (T,) int64; ve (V, D) bf16 or None; lam
    (2,) f32; cos, sin (T, d/2) f32 -> (q, k, v (T, H, d) bf16, qkv (T, 3D) bf16)."""
    (M, K), N = x8.shape, w8.size(0)
    hd = N // (3 * heads)
    BM, BK, group, stages, warps, split = tiles
    qkv = x8.new_empty(M, N, dtype=torch.bfloat16)
    out = x8.new_empty(3, M, heads * hd, dtype=torch.bfloat16)
    desc = TensorDescriptor.from_tensor
    sms = torch.cuda.get_device_properties(x8.device).multi_processor_count if x8.is_cuda else 4
    programs = min(sms, (M // BM) * 3 * heads)
    out_block = [BM, hd // 2]
    _qkv_fp8_kernel[(programs,)](
        desc(x8, [BM, BK]), desc(w8, [hd // 2 if split else hd, BK]), desc(qkv, out_block),
        desc(out.view(3 * M, heads * hd), out_block), xs, ws, tok, qkv if ve is None else ve, lam, cos, sin, M, K,
        torch.finfo(torch.float32).eps, heads, hd, BM, BK, group, programs, ve is not None, bool(split), flatten, pre,
        num_warps=warps, num_stages=stages)
    q, k, v = out.view(3, M, heads, hd).unbind(0)
    return q, k, v, qkv


def rel(a, b):
    return float((a.float() - b.float()).norm() / b.float().norm())


def main():
    small = "--small" in sys.argv
    dev = "cpu" if small else "cuda"
    torch.manual_seed(0)
    T, D, H, V = (256, 256, 2, 33) if small else (65536, 768, 6, 33)
    hd = D // H
    x = torch.randn(T, D, device=dev).bfloat16()
    w = ((torch.rand(3 * D, D, device=dev) * 2 - 1) * 0.5 * (3 / D) ** 0.5).bfloat16()
    tok = torch.randint(0, V, (T,), device=dev)
    ve = torch.randn(V, D, device=dev).bfloat16()
    lam = torch.tensor([0.7, 0.4], device=dev)
    pos = torch.arange(T, device=dev) % 300
    inv = 1.0 / 10000 ** (torch.arange(0, hd, 2, device=dev).float() / hd)
    ang = pos[:, None].float() * inv[None]
    cos, sin = ang.cos(), ang.sin()
    x8, xs = tp.fp8_rowwise(x)
    w8, ws = tp.fp8_rowwise(w)
    tiles_all = [(64, 64, 2, 2, 4, 0), (64, 64, 2, 2, 4, 1)] if small else [
        (128, 128, 8, 4, 8, 0), (128, 128, 8, 4, 8, 1), (128, 128, 16, 3, 8, 0), (128, 128, 16, 4, 8, 0),
        (128, 64, 8, 4, 8, 0), (128, 256, 8, 2, 8, 0)]
    # the product as the kernel rounds it, then the current qkv_prep path on it
    qkv_ref = ((x8.float() @ w8.float().t()) * xs * ws.t()).bfloat16()
    for ves in (ve, None):
        ref = tp.qkv_prep_reference(qkv_ref.float(), None if ves is None else ves.float()[tok], lam, cos[:, None],
                                    sin[:, None], H)
        for tiles, pre in zip(tiles_all[:2] * 2, (0, 0, 2, 2)):
            q, k, v, qkv = qkv_fp8(x8, xs, w8, ws, tok, ves, lam, cos, sin, H, tiles, pre=pre)
            print("ERR", json.dumps(dict(tiles=tiles, ve=ves is not None, qkv=rel(qkv, qkv_ref), q=rel(q, ref[0]),
                                         k=rel(k, ref[1]), v=rel(v, ref[2]))), flush=True)
            if dev == "cuda":  # against the trainer's own qkv_prep kernel on this kernel's raw qkv
                ops = getattr(torch.ops, tp.OPS)
                lamx = lam if ves is not None else torch.ones(2, device=dev)
                q2, k2, v2 = ops.qkv_prep(qkv, tok, ves, lamx, cos, sin, H)
                print("VS_PREP", json.dumps(dict(tiles=tiles, ve=ves is not None,
                                                 q_max_ulp_diff=float((q.float() - q2.float()).abs().max()),
                                                 q_equal=float((q == q2).float().mean()),
                                                 k_equal=float((k == k2).float().mean()),
                                                 v_equal=float((v == v2).float().mean()))), flush=True)
    if small:
        return
    from triton.testing import do_bench
    ops = getattr(torch.ops, tp.OPS)
    T_ = {}
    T_["main_scaled_mm"] = lambda: torch._scaled_mm(x8, w8.t(), scale_a=xs, scale_b=ws.t(), out_dtype=torch.bfloat16,
                                                     use_fast_accum=True)
    qkv_m = T_["main_scaled_mm"]()
    T_["main_qkv_prep"] = lambda: ops.qkv_prep(qkv_m, tok, ve, lam, cos, sin, H)
    T_["main_total"] = lambda: ops.qkv_prep(T_["main_scaled_mm"](), tok, ve, lam, cos, sin, H)
    for pre in (0, 1, 2):
        for tiles in tiles_all:
            T_[f"fused_pre{pre}_{tiles}"] = lambda tiles=tiles, pre=pre: qkv_fp8(x8, xs, w8, ws, tok, ve, lam, cos, sin, H,
                                                                              tiles, pre=pre)
    T_["raw_product_only"] = lambda: qkv_fp8(x8, xs, w8, ws, tok, ve, lam, cos, sin, H, tiles_all[0], pre=-1)
    T_["fused_pre2_noVE"] = lambda: qkv_fp8(x8, xs, w8, ws, tok, None, lam, cos, sin, H, tiles_all[0], pre=2)
    for name, fn in T_.items():
        try:
            fn()
            torch.cuda.synchronize()
            ms = do_bench(fn, warmup=25, rep=200, return_mode="median")
            print("TIME", json.dumps(dict(variant=name, ms=round(ms, 4))), flush=True)
        except Exception as e:
            print("TIME_FAILED", json.dumps(dict(variant=name, error=repr(e)[:400])), flush=True)


if __name__ == "__main__":
    main()
