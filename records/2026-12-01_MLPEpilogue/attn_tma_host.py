"""Experiment (issue 3): doc_attention's three kernels loading q, k, v, do tiles through TMA tensor descriptors made
on the host (triton.tools.tensor_descriptor.TensorDescriptor, passed as kernel parameters: no descriptor written per
program, as tl.make_tensor_descriptor does) instead of pointer loads. Against train_plm's kernels on one real reference micro-batch (65,536 tokens, 6 heads x 128): bits, kernel
times (do_bench median). python3 exp/attn_tma.py"""
import json, math, os, sys
import torch
import triton
import triton.language as tl
sys.path.insert(0, os.getcwd())
import train_plm as tp
from triton.testing import do_bench
from triton.tools.tensor_descriptor import TensorDescriptor

_attn_mask, _attn_full = tp._attn_mask, tp._attn_full
triton.set_allocator(lambda size, align, stream: torch.empty(size, device="cpu" if os.environ.get("TRITON_INTERPRET") else "cuda", dtype=torch.int8))


def out(tag, **kw):
    print(tag, json.dumps(kw), flush=True)


@triton.jit
def _attn_fwd_tma(qd, kd, vd, Q, K, V, O, LSE, DOC, LO, HI, T, QK_SCALE: tl.constexpr, WINDOW: tl.constexpr, H: tl.constexpr,
                  HD: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, RB: tl.constexpr, TMA_O: tl.constexpr):
    h, mb = tl.program_id(0), tl.program_id(1)
    tq, col = mb * BM + tl.arange(0, BM), tl.arange(0, HD)[None, :]
    q = qd.load([mb * BM, h * HD])
    m_i = tl.full([BM], -1.0e30, tl.float32)
    l_i = tl.zeros([BM], tl.float32)
    acc = tl.zeros([BM, HD], tl.float32)
    for start in tl.range(tl.load(LO + mb * BM // RB), tl.load(HI + (mb * BM + BM - 1) // RB), BN):
        tk = start + tl.arange(0, BN)
        k = kd.load([start, h * HD])
        s = tl.dot(q, tl.trans(k))
        if not _attn_full(DOC, mb * BM, start, BM, BN, WINDOW):
            s = tl.where(_attn_mask(tl.load(DOC + tq), tl.load(DOC + tk), tq, tk, WINDOW), s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1) * QK_SCALE)
        p = tl.exp2(s * QK_SCALE - m_new[:, None])
        alpha = tl.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        v = vd.load([start, h * HD])
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        m_i = m_new
    res = (acc / l_i[:, None]).to(O.dtype.element_ty)
    if TMA_O:
        od = tl.make_tensor_descriptor(O, shape=[T, H * HD], strides=[H * HD, 1], block_shape=[BM, HD])
        od.store([mb * BM, h * HD], res)
    else:
        tl.store(O + tq[:, None] * (H * HD) + h * HD + col, res)
    tl.store(LSE + h * T + tq, m_i + tl.log2(l_i))


@triton.jit
def _attn_bwd_dq_tma(qd, dod, kd, vd, Q, K, V, O, DO, LSE, DELTA, DOC, LO, HI, DQ, T, QK_SCALE: tl.constexpr, SCALE: tl.constexpr,
                     WINDOW: tl.constexpr, H: tl.constexpr, HD: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr,
                     RB: tl.constexpr):
    h, mb = tl.program_id(0), tl.program_id(1)
    tq, col = mb * BM + tl.arange(0, BM), tl.arange(0, HD)[None, :]
    at = tq[:, None] * (H * HD) + h * HD + col
    q, do = qd.load([mb * BM, h * HD]), dod.load([mb * BM, h * HD])
    lse = tl.load(LSE + h * T + tq)
    delta = tl.sum(tl.load(O + at).to(tl.float32) * do.to(tl.float32), 1)
    tl.store(DELTA + h * T + tq, delta)
    dq = tl.zeros([BM, HD], tl.float32)
    for start in tl.range(tl.load(LO + mb * BM // RB), tl.load(HI + (mb * BM + BM - 1) // RB), BN):
        tk = start + tl.arange(0, BN)
        k = kd.load([start, h * HD])
        v = vd.load([start, h * HD])
        p = tl.exp2(tl.dot(q, tl.trans(k)) * QK_SCALE - lse[:, None])
        if not _attn_full(DOC, mb * BM, start, BM, BN, WINDOW):
            p = tl.where(_attn_mask(tl.load(DOC + tq), tl.load(DOC + tk), tq, tk, WINDOW), p, 0.0)
        ds = p * (tl.dot(do, tl.trans(v)) - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k)
    tl.store(DQ + at, (dq * SCALE).to(DQ.dtype.element_ty))


@triton.jit
def _attn_bwd_dkdv_tma(qd, dod, kd, vd, Q, K, V, DO, LSE, DELTA, DOC, LO, HI, DK, DV, T, QK_SCALE: tl.constexpr, SCALE: tl.constexpr,
                       WINDOW: tl.constexpr, H: tl.constexpr, HD: tl.constexpr, BN: tl.constexpr, BM: tl.constexpr,
                       RB: tl.constexpr):
    h, nb = tl.program_id(0), tl.program_id(1)
    tk, col = nb * BN + tl.arange(0, BN), tl.arange(0, HD)[None, :]
    k = kd.load([nb * BN, h * HD])
    v = vd.load([nb * BN, h * HD])
    dk = tl.zeros([BN, HD], tl.float32)
    dv = tl.zeros([BN, HD], tl.float32)
    for start in tl.range(tl.load(LO + nb * BN // RB), tl.load(HI + (nb * BN + BN - 1) // RB), BM):
        tq = start + tl.arange(0, BM)
        q = qd.load([start, h * HD])
        p_t = tl.exp2(tl.dot(k, tl.trans(q)) * QK_SCALE - tl.load(LSE + h * T + tq)[None, :])
        if not _attn_full(DOC, start, nb * BN, BM, BN, WINDOW):
            p_t = tl.where(_attn_mask(tl.load(DOC + tk), tl.load(DOC + tq), tk, tq, WINDOW), p_t, 0.0)
        do = dod.load([start, h * HD])
        dv += tl.dot(p_t.to(do.dtype), do)
        ds_t = p_t * (tl.dot(v, tl.trans(do)) - tl.load(DELTA + h * T + tq)[None, :])
        dk += tl.dot(ds_t.to(q.dtype), q)
    tl.store(DK + tk[:, None] * (H * HD) + h * HD + col, (dk * SCALE).to(DK.dtype.element_ty))
    tl.store(DV + tk[:, None] * (H * HD) + h * HD + col, dv.to(DV.dtype.element_ty))


def forward(q, k, v, doc, lo, hi, tiles=(64, 64, 4, 3), tma_o=False, window=0):
    T, H, hd = q.shape
    o, lse = torch.empty_like(q), q.new_empty(H, T, dtype=torch.float32)
    P, N, warps, stages = tiles
    qd, kd, vd = (TensorDescriptor.from_tensor(t.view(T, H * hd), [b, hd]) for t, b in ((q, P), (k, N), (v, N)))
    _attn_fwd_tma[(H, T // P)](qd, kd, vd, q, k, v, o, lse, doc, lo, hi, T, hd ** -0.5 * math.log2(math.e), window, H, hd, P, N,
                               64, tma_o, num_warps=warps, num_stages=stages)
    return o, lse


def backward(do, q, k, v, o, lse, doc, lo, hi, dq_t=(64, 64, 4, 2), dkdv_t=(64, 64, 4, 2), window=0,
             which=("dq", "dkdv")):
    T, H, hd = q.shape
    delta = torch.empty_like(lse)
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    scales = (hd ** -0.5 * math.log2(math.e), hd ** -0.5)
    P, N, warps, stages = dq_t
    if "dq" in which:
        qd, dod, kd, vd = (TensorDescriptor.from_tensor(t.view(T, H * hd), [b, hd]) for t, b in ((q, P), (do, P), (k, N), (v, N)))
        _attn_bwd_dq_tma[(H, T // P)](qd, dod, kd, vd, q, k, v, o, do, lse, delta, doc, lo, hi, dq, T, *scales, window, H, hd, P, N, 64,
                                      num_warps=warps, num_stages=stages)
    else:
        tp._attn_bwd_dq[(H, T // P)](q, k, v, o, do, lse, delta, doc, lo, hi, dq, T, *scales, window, H, hd, 64, 64,
                                     64, num_warps=4, num_stages=2)
    P, N, warps, stages = dkdv_t
    if "dkdv" in which:
        qd, dod, kd, vd = (TensorDescriptor.from_tensor(t.view(T, H * hd), [b, hd]) for t, b in ((q, N), (do, N), (k, P), (v, P)))
        _attn_bwd_dkdv_tma[(H, T // P)](qd, dod, kd, vd, q, k, v, do, lse, delta, doc, lo, hi, dk, dv, T, *scales, window, H, hd, P, N,
                                        64, num_warps=warps, num_stages=stages)
    elif "main_dkdv" in which:
        tp._attn_bwd_dkdv[(H, T // P)](q, k, v, do, lse, delta, doc, lo, hi, dk, dv, T, *scales, window, H, hd, 64,
                                       64, 64, num_warps=4, num_stages=2)
    return dq, dk, dv


def main():
    dev, bf = torch.device("cuda"), torch.bfloat16
    cfg = tp.parse_config(["--preset", "reference"], has_gpu=True)
    loader = tp.PackedLoader(tp.resolve_files(cfg.train_files, "train"), cfg, 0, 1, dev, 0)
    for _ in range(3):
        tokens, starts, g = loader.next()
    T, H, D = tokens.numel(), 6, 128
    doc, pos = tp.document_ids(starts)
    doc, lo, hi = tp.document_ranges(doc, pos, 0)
    torch.manual_seed(0)
    inv = 1.0 / 10000 ** (torch.arange(0, D, 2, device=dev).float() / D)
    ang = (pos[:, None].float() * inv[None])[:, None]
    cos, sin = ang.cos(), ang.sin()
    qkv = torch.randn(T, 3 * H * D, device=dev, dtype=bf)
    q, k, v = tp.qkv_prep(qkv, tokens, None, None, cos, sin, H)
    go = torch.randn(T, H, D, device=dev, dtype=bf)
    ops = getattr(torch.ops, tp.OPS)
    o_m, lse_m = ops.doc_attention(q, k, v, doc, lo, hi, 0)
    g_m = ops.doc_attention_backward(go, q, k, v, o_m, lse_m, doc, lo, hi, 0)
    o2, lse2 = forward(q, k, v, doc, lo, hi)
    o3, _ = forward(q, k, v, doc, lo, hi, tma_o=True)
    g2 = backward(go, q, k, v, o_m, lse_m, doc, lo, hi)
    out("BITS_VS_MAIN", o=torch.equal(o2, o_m), o_tma_store=torch.equal(o3, o_m), lse=torch.equal(lse2, lse_m),
        **{n: torch.equal(a, b) for n, a, b in zip(("dq", "dk", "dv"), g2, g_m)},
        max_abs={n: float((a.float() - b.float()).abs().max()) for n, a, b in zip(("o", "dq", "dk", "dv"), (o2,) + g2, (o_m,) + g_m)})
    V = {"main_fwd": lambda: ops.doc_attention(q, k, v, doc, lo, hi, 0),
         "main_bwd": lambda: ops.doc_attention_backward(go, q, k, v, o_m, lse_m, doc, lo, hi, 0),
         "main_dq_only": lambda: backward(go, q, k, v, o_m, lse_m, doc, lo, hi, which=()),
         "main_dq_dkdv": lambda: backward(go, q, k, v, o_m, lse_m, doc, lo, hi, which=("main_dkdv",))}
    for t in ((64, 64, 4, 3), (64, 64, 4, 2), (64, 64, 4, 4), (64, 64, 8, 3), (128, 64, 8, 3), (128, 64, 8, 2)):
        V[f"fwd_tma_{t}"] = lambda t=t: forward(q, k, v, doc, lo, hi, tiles=t)
    V["fwd_tma_store_(64, 64, 4, 3)"] = lambda: forward(q, k, v, doc, lo, hi, tma_o=True)
    for t in ((64, 64, 4, 2), (64, 64, 4, 3), (64, 64, 8, 2), (128, 64, 8, 2)):
        V[f"tma_dq_{t}+main_dkdv"] = lambda t=t: backward(go, q, k, v, o_m, lse_m, doc, lo, hi, dq_t=t, which=("dq", "main_dkdv"))
        V[f"main_dq+tma_dkdv_{t}"] = lambda t=t: backward(go, q, k, v, o_m, lse_m, doc, lo, hi, dkdv_t=t, which=("dkdv",))
    for name, fn in V.items():
        try:
            fn()
            torch.cuda.synchronize()
            out("TIME", variant=name, ms=round(do_bench(fn, warmup=30, rep=200, return_mode="median"), 4))
        except Exception as e:
            out("TIME_FAILED", variant=name, error=repr(e)[:300])


if __name__ == "__main__":
    main()
