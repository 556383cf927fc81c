"""Experiment (issue 3): doc_attention's three kernels with two heads per program (the same query block, so the same
key range: twice the work per program, two independent chains of products to overlap, no wider ranges as with
128-query tiles). Against train_plm's kernels on one real reference micro-batch (65,536 tokens, 6 heads x 128):
bits, kernel times (do_bench median). python3 exp/attn_2h.py"""
import json, math, os, sys
import torch
import triton
import triton.language as tl
sys.path.insert(0, os.getcwd())
import train_plm as tp
from triton.testing import do_bench

_attn_mask, _attn_full = tp._attn_mask, tp._attn_full


def out(tag, **kw):
    print(tag, json.dumps(kw), flush=True)


@triton.jit
def _fwd_head(q, K, V, tq, tk, h, m_i, l_i, acc, full, DOC, QK_SCALE: tl.constexpr, WINDOW: tl.constexpr,
              H: tl.constexpr, HD: tl.constexpr):
    col = tl.arange(0, HD)[None, :]
    k = tl.load(K + tk[:, None] * (H * HD) + h * HD + col)
    s = tl.dot(q, tl.trans(k))
    if not full:
        s = tl.where(_attn_mask(tl.load(DOC + tq), tl.load(DOC + tk), tq, tk, WINDOW), s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, 1) * QK_SCALE)
    p = tl.exp2(s * QK_SCALE - m_new[:, None])
    alpha = tl.exp2(m_i - m_new)
    l_i = l_i * alpha + tl.sum(p, 1)
    v = tl.load(V + tk[:, None] * (H * HD) + h * HD + col)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
    return m_new, l_i, acc


@triton.jit
def _attn_fwd_2h(Q, K, V, O, LSE, DOC, LO, HI, T, QK_SCALE: tl.constexpr, WINDOW: tl.constexpr, H: tl.constexpr,
                 HD: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, RB: tl.constexpr):
    h = 2 * tl.program_id(0)
    mb = tl.program_id(1)
    tq, col = mb * BM + tl.arange(0, BM), tl.arange(0, HD)[None, :]
    qa = tl.load(Q + tq[:, None] * (H * HD) + h * HD + col)
    qb = tl.load(Q + tq[:, None] * (H * HD) + (h + 1) * HD + col)
    ma = tl.full([BM], -1.0e30, tl.float32)
    mb_ = tl.full([BM], -1.0e30, tl.float32)
    la = tl.zeros([BM], tl.float32)
    lb = tl.zeros([BM], tl.float32)
    acca = tl.zeros([BM, HD], tl.float32)
    accb = tl.zeros([BM, HD], tl.float32)
    for start in tl.range(tl.load(LO + mb * BM // RB), tl.load(HI + (mb * BM + BM - 1) // RB), BN):
        tk = start + tl.arange(0, BN)
        full = _attn_full(DOC, mb * BM, start, BM, BN, WINDOW)
        ma, la, acca = _fwd_head(qa, K, V, tq, tk, h, ma, la, acca, full, DOC, QK_SCALE, WINDOW, H, HD)
        mb_, lb, accb = _fwd_head(qb, K, V, tq, tk, h + 1, mb_, lb, accb, full, DOC, QK_SCALE, WINDOW, H, HD)
    tl.store(O + tq[:, None] * (H * HD) + h * HD + col, (acca / la[:, None]).to(O.dtype.element_ty))
    tl.store(O + tq[:, None] * (H * HD) + (h + 1) * HD + col, (accb / lb[:, None]).to(O.dtype.element_ty))
    tl.store(LSE + h * T + tq, ma + tl.log2(la))
    tl.store(LSE + (h + 1) * T + tq, mb_ + tl.log2(lb))


@triton.jit
def _dq_head(q, do, lse, delta, K, V, tq, tk, h, dq, full, DOC, QK_SCALE: tl.constexpr, WINDOW: tl.constexpr,
             H: tl.constexpr, HD: tl.constexpr):
    col = tl.arange(0, HD)[None, :]
    k = tl.load(K + tk[:, None] * (H * HD) + h * HD + col)
    v = tl.load(V + tk[:, None] * (H * HD) + h * HD + col)
    p = tl.exp2(tl.dot(q, tl.trans(k)) * QK_SCALE - lse[:, None])
    if not full:
        p = tl.where(_attn_mask(tl.load(DOC + tq), tl.load(DOC + tk), tq, tk, WINDOW), p, 0.0)
    ds = p * (tl.dot(do, tl.trans(v)) - delta[:, None])
    return dq + tl.dot(ds.to(k.dtype), k)


@triton.jit
def _attn_bwd_dq_2h(Q, K, V, O, DO, LSE, DELTA, DOC, LO, HI, DQ, T, QK_SCALE: tl.constexpr, SCALE: tl.constexpr,
                    WINDOW: tl.constexpr, H: tl.constexpr, HD: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr,
                    RB: tl.constexpr):
    h = 2 * tl.program_id(0)
    mb = tl.program_id(1)
    tq, col = mb * BM + tl.arange(0, BM), tl.arange(0, HD)[None, :]
    ata = tq[:, None] * (H * HD) + h * HD + col
    atb = ata + HD
    qa, doa, qb, dob = tl.load(Q + ata), tl.load(DO + ata), tl.load(Q + atb), tl.load(DO + atb)
    lsea, lseb = tl.load(LSE + h * T + tq), tl.load(LSE + (h + 1) * T + tq)
    da = tl.sum(tl.load(O + ata).to(tl.float32) * doa.to(tl.float32), 1)
    db = tl.sum(tl.load(O + atb).to(tl.float32) * dob.to(tl.float32), 1)
    tl.store(DELTA + h * T + tq, da)
    tl.store(DELTA + (h + 1) * T + tq, db)
    dqa = tl.zeros([BM, HD], tl.float32)
    dqb = tl.zeros([BM, HD], tl.float32)
    for start in tl.range(tl.load(LO + mb * BM // RB), tl.load(HI + (mb * BM + BM - 1) // RB), BN):
        tk = start + tl.arange(0, BN)
        full = _attn_full(DOC, mb * BM, start, BM, BN, WINDOW)
        dqa = _dq_head(qa, doa, lsea, da, K, V, tq, tk, h, dqa, full, DOC, QK_SCALE, WINDOW, H, HD)
        dqb = _dq_head(qb, dob, lseb, db, K, V, tq, tk, h + 1, dqb, full, DOC, QK_SCALE, WINDOW, H, HD)
    tl.store(DQ + ata, (dqa * SCALE).to(DQ.dtype.element_ty))
    tl.store(DQ + atb, (dqb * SCALE).to(DQ.dtype.element_ty))


@triton.jit
def _dkdv_head(k, v, Q, DO, LSE, DELTA, tq, tk, h, dk, dv, full, DOC, T, QK_SCALE: tl.constexpr,
               WINDOW: tl.constexpr, H: tl.constexpr, HD: tl.constexpr):
    col = tl.arange(0, HD)[None, :]
    q = tl.load(Q + tq[:, None] * (H * HD) + h * HD + col)
    p_t = tl.exp2(tl.dot(k, tl.trans(q)) * QK_SCALE - tl.load(LSE + h * T + tq)[None, :])
    if not full:
        p_t = tl.where(_attn_mask(tl.load(DOC + tk), tl.load(DOC + tq), tk, tq, WINDOW), p_t, 0.0)
    do = tl.load(DO + tq[:, None] * (H * HD) + h * HD + col)
    dv += tl.dot(p_t.to(do.dtype), do)
    ds_t = p_t * (tl.dot(v, tl.trans(do)) - tl.load(DELTA + h * T + tq)[None, :])
    dk += tl.dot(ds_t.to(q.dtype), q)
    return dk, dv


@triton.jit
def _attn_bwd_dkdv_2h(Q, K, V, DO, LSE, DELTA, DOC, LO, HI, DK, DV, T, QK_SCALE: tl.constexpr, SCALE: tl.constexpr,
                      WINDOW: tl.constexpr, H: tl.constexpr, HD: tl.constexpr, BN: tl.constexpr, BM: tl.constexpr,
                      RB: tl.constexpr):
    h = 2 * tl.program_id(0)
    nb = tl.program_id(1)
    tk, col = nb * BN + tl.arange(0, BN), tl.arange(0, HD)[None, :]
    ata = tk[:, None] * (H * HD) + h * HD + col
    atb = ata + HD
    ka, va, kb, vb = tl.load(K + ata), tl.load(V + ata), tl.load(K + atb), tl.load(V + atb)
    dka = tl.zeros([BN, HD], tl.float32)
    dva = tl.zeros([BN, HD], tl.float32)
    dkb = tl.zeros([BN, HD], tl.float32)
    dvb = tl.zeros([BN, HD], tl.float32)
    for start in tl.range(tl.load(LO + nb * BN // RB), tl.load(HI + (nb * BN + BN - 1) // RB), BM):
        tq = start + tl.arange(0, BM)
        full = _attn_full(DOC, start, nb * BN, BM, BN, WINDOW)
        dka, dva = _dkdv_head(ka, va, Q, DO, LSE, DELTA, tq, tk, h, dka, dva, full, DOC, T, QK_SCALE, WINDOW, H, HD)
        dkb, dvb = _dkdv_head(kb, vb, Q, DO, LSE, DELTA, tq, tk, h + 1, dkb, dvb, full, DOC, T, QK_SCALE, WINDOW, H, HD)
    tl.store(DK + ata, (dka * SCALE).to(DK.dtype.element_ty))
    tl.store(DV + ata, dva.to(DV.dtype.element_ty))
    tl.store(DK + atb, (dkb * SCALE).to(DK.dtype.element_ty))
    tl.store(DV + atb, dvb.to(DV.dtype.element_ty))


def forward_2h(q, k, v, doc, lo, hi, tiles=(64, 64, 4, 3), window=0):
    T, H, hd = q.shape
    o, lse = torch.empty_like(q), q.new_empty(H, T, dtype=torch.float32)
    P, N, warps, stages = tiles
    _attn_fwd_2h[(H // 2, T // P)](q, k, v, o, lse, doc, lo, hi, T, hd ** -0.5 * math.log2(math.e), window, H, hd,
                                    P, N, 64, num_warps=warps, num_stages=stages)
    return o, lse


def backward_2h(do, q, k, v, o, lse, doc, lo, hi, dq_t=(64, 64, 4, 2), dkdv_t=(64, 64, 4, 2), window=0,
                which=("dq", "dkdv")):
    T, H, hd = q.shape
    delta = torch.empty_like(lse)
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    scales = (hd ** -0.5 * math.log2(math.e), hd ** -0.5)
    P, N, warps, stages = dq_t
    if "dq" in which:
        _attn_bwd_dq_2h[(H // 2, T // P)](q, k, v, o, do, lse, delta, doc, lo, hi, dq, T, *scales, window, H, hd, P, N,
                                           64, num_warps=warps, num_stages=stages)
    else:
        tp._attn_bwd_dq[(H, T // P)](q, k, v, o, do, lse, delta, doc, lo, hi, dq, T, *scales, window, H, hd, 64, 64,
                                     64, num_warps=4, num_stages=2)
    P, N, warps, stages = dkdv_t
    if "dkdv" in which:
        _attn_bwd_dkdv_2h[(H // 2, T // P)](q, k, v, do, lse, delta, doc, lo, hi, dk, dv, T, *scales, window, H, hd,
                                             P, N, 64, num_warps=warps, num_stages=stages)
    else:
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
    o2, lse2 = forward_2h(q, k, v, doc, lo, hi)
    g2 = backward_2h(go, q, k, v, o_m, lse_m, doc, lo, hi)
    out("BITS_VS_MAIN", o=torch.equal(o2, o_m), lse=torch.equal(lse2, lse_m),
        **{n: torch.equal(a, b) for n, a, b in zip(("dq", "dk", "dv"), g2, g_m)},
        max_abs={n: float((a.float() - b.float()).abs().max()) for n, a, b in zip(("o", "dq", "dk", "dv"), (o2,) + g2, (o_m,) + g_m)})
    V = {"main_fwd": lambda: ops.doc_attention(q, k, v, doc, lo, hi, 0),
         "main_bwd": lambda: ops.doc_attention_backward(go, q, k, v, o_m, lse_m, doc, lo, hi, 0)}
    for t in ((64, 64, 4, 3), (64, 64, 4, 2), (64, 64, 8, 3), (64, 64, 8, 2), (64, 32, 4, 3), (64, 32, 8, 3)):
        V[f"fwd2h_{t}"] = lambda t=t: forward_2h(q, k, v, doc, lo, hi, tiles=t)
    for t in ((64, 64, 4, 2), (64, 64, 8, 2), (64, 64, 4, 3), (64, 64, 8, 3), (64, 32, 4, 2), (64, 32, 8, 2)):
        V[f"bwd_dq2h_{t}"] = lambda t=t: backward_2h(go, q, k, v, o_m, lse_m, doc, lo, hi, dq_t=t, which=("dq",))
        V[f"bwd_dkdv2h_{t}"] = lambda t=t: backward_2h(go, q, k, v, o_m, lse_m, doc, lo, hi, dkdv_t=t, which=("dkdv",))
    for name, fn in V.items():
        try:
            fn()
            torch.cuda.synchronize()
            out("TIME", variant=name, ms=round(do_bench(fn, warmup=30, rep=200, return_mode="median"), 4))
        except Exception as e:
            out("TIME_FAILED", variant=name, error=repr(e)[:300])


if __name__ == "__main__":
    main()
