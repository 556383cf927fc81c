"""Experiment (issue 3): document-masked attention of packed micro-batches as Triton kernels of our own, with
the QK-norm + RoPE + value-embedding backward fused into the attention backward's epilogues.

q, k, v (T, H, D) bf16, o (T, H, D). Sequences are contiguous runs of tokens (doc ids non-decreasing), so the
keys a query block can see are one contiguous range: lo/hi per RB-token block, shared by all layers.
Forward: one program per (BM queries, head), online softmax (FlashAttention-2, Dao 2023) in base 2.
Backward, deterministic (no atomics): delta = rowsum(o * do); one program per (BN1 keys, head) for dK, dV
looping over query tiles; one per (BM2 queries, head) for dQ looping over key tiles (as Triton's fused
attention tutorial). FUSED: the epilogues apply RoPE's transpose and RMSNorm's backward (QK-norm) and the
value-embedding mix's backward, writing dqkv (T, 3HD) directly (qkv_prep's backward kernel goes away).
"""
import math
import torch
import triton
import triton.language as tl

RB = 64  # tokens per range block


def doc_ranges(starts, rb=RB):
    """starts (T,) bool -> doc (T,) int32, lo, hi (T/rb,) int32: the token range [lo, hi) (multiples of rb) that
    holds every sequence touching range block b."""
    T = starts.numel()
    idx = torch.arange(T, device=starts.device)
    doc = torch.cumsum(starts.int(), 0, dtype=torch.int32) - 1
    first = torch.cummax(torch.where(starts, idx, 0), 0).values  # first token of each token's sequence
    nxt = torch.where(starts, idx, T)
    end = torch.cat([nxt[1:].flip(0).cummin(0).values.flip(0), nxt.new_full((1,), T)])  # one past its last
    lo = (first[::rb] // rb * rb).int()
    hi = ((end[rb - 1::rb] + rb - 1) // rb * rb).int()
    return doc, lo, hi


@triton.jit
def _attn_fwd(Q, K, V, O, LSE, DOC, LO, HI, T, qk_scale, H: tl.constexpr, D: tl.constexpr, BM: tl.constexpr,
              BN: tl.constexpr, RB: tl.constexpr):
    h = tl.program_id(0)
    mb = tl.program_id(1)
    offs_m = mb * BM + tl.arange(0, BM)
    offs_d = tl.arange(0, D)
    S: tl.constexpr = H * D
    q = tl.load(Q + offs_m[:, None] * S + h * D + offs_d[None, :])
    doc_q = tl.load(DOC + offs_m)
    lo = tl.load(LO + (mb * BM) // RB)
    hi = tl.load(HI + (mb * BM + BM - 1) // RB)
    m_i = tl.full([BM], -1.0e30, tl.float32)  # finite: a row may see no key of its sequence in a tile
    l_i = tl.zeros([BM], tl.float32)
    acc = tl.zeros([BM, D], tl.float32)
    for start in tl.range(lo, hi, BN):
        offs_n = start + tl.arange(0, BN)
        k = tl.load(K + offs_n[:, None] * S + h * D + offs_d[None, :])
        s = tl.dot(q, tl.trans(k))
        doc_k = tl.load(DOC + offs_n)
        s = tl.where(doc_q[:, None] == doc_k[None, :], s * qk_scale, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        p = tl.exp2(s - m_new[:, None])
        alpha = tl.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        v = tl.load(V + offs_n[:, None] * S + h * D + offs_d[None, :])
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        m_i = m_new
    o = acc / l_i[:, None]
    tl.store(O + offs_m[:, None] * S + h * D + offs_d[None, :], o.to(O.dtype.element_ty))
    tl.store(LSE + h * T + offs_m, m_i + tl.log2(l_i))


@triton.jit
def _attn_delta(O, DO, DELTA, T, H: tl.constexpr, D: tl.constexpr, BM: tl.constexpr):
    h = tl.program_id(0)
    offs_m = tl.program_id(1) * BM + tl.arange(0, BM)
    offs = offs_m[:, None] * (H * D) + h * D + tl.arange(0, D)[None, :]
    o = tl.load(O + offs).to(tl.float32)
    do = tl.load(DO + offs).to(tl.float32)
    tl.store(DELTA + h * T + offs_m, tl.sum(o * do, 1))


@triton.jit
def _norm_rope_grad_rows(x1, x2, g1, g2, c, s, EPS: tl.constexpr, HD: tl.constexpr):
    """RMSNorm + RoPE backward on rows in registers: input halves x1, x2 (fp32), output-gradient halves g1, g2."""
    r = tl.rsqrt((tl.sum(x1 * x1, 1) + tl.sum(x2 * x2, 1))[:, None] / HD + EPS)
    n1, n2 = x1 * r, x2 * r
    dn1, dn2 = g1 * c + g2 * s, g2 * c - g1 * s
    m = (tl.sum(dn1 * n1, 1) + tl.sum(dn2 * n2, 1))[:, None] / HD
    return r * (dn1 - n1 * m), r * (dn2 - n2 * m)


@triton.jit
def _halves(x, BR: tl.constexpr, D: tl.constexpr):
    """(BR, D) -> its column halves (BR, D/2), (BR, D/2)."""
    return tl.split(tl.permute(tl.reshape(x, [BR, 2, D // 2]), (0, 2, 1)))


@triton.jit
def _attn_bwd_dkdv(Q, K, V, DO, LSE, DELTA, DOC, LO, HI, DK, DV,
                   QKV, VE, ve_stride, LAM, COS, SIN, DQKV, DVE, DLAM,
                   T, qk_scale, sm_scale, EPS: tl.constexpr, H: tl.constexpr, D: tl.constexpr,
                   BM: tl.constexpr, BN: tl.constexpr, RB: tl.constexpr, FUSED: tl.constexpr, HAS_VE: tl.constexpr):
    h = tl.program_id(0)
    nb = tl.program_id(1)
    offs_n = nb * BN + tl.arange(0, BN)
    offs_d = tl.arange(0, D)
    S: tl.constexpr = H * D
    k = tl.load(K + offs_n[:, None] * S + h * D + offs_d[None, :])
    v = tl.load(V + offs_n[:, None] * S + h * D + offs_d[None, :])
    doc_k = tl.load(DOC + offs_n)
    lo = tl.load(LO + (nb * BN) // RB)
    hi = tl.load(HI + (nb * BN + BN - 1) // RB)
    dk = tl.zeros([BN, D], tl.float32)
    dv = tl.zeros([BN, D], tl.float32)
    for start in tl.range(lo, hi, BM):
        offs_m = start + tl.arange(0, BM)
        q = tl.load(Q + offs_m[:, None] * S + h * D + offs_d[None, :])
        lse = tl.load(LSE + h * T + offs_m)
        doc_q = tl.load(DOC + offs_m)
        sT = tl.dot(k, tl.trans(q))  # (BN, BM)
        pT = tl.exp2(sT * qk_scale - lse[None, :])
        pT = tl.where(doc_k[:, None] == doc_q[None, :], pT, 0.0)
        do = tl.load(DO + offs_m[:, None] * S + h * D + offs_d[None, :])
        dv += tl.dot(pT.to(do.dtype), do)
        delta = tl.load(DELTA + h * T + offs_m)
        dpT = tl.dot(v, tl.trans(do))
        dsT = pT * (dpT - delta[None, :])
        dk += tl.dot(dsT.to(q.dtype), q)
    dk *= sm_scale
    if FUSED:
        HALF: tl.constexpr = D // 2
        half = tl.arange(0, HALF)[None, :]
        t = offs_n[:, None]
        c = tl.load(COS + t * HALF + half)
        s = tl.load(SIN + t * HALF + half)
        row = QKV + t * (3 * S)
        krow = row + (H + h) * D
        x1 = tl.load(krow + half).to(tl.float32)
        x2 = tl.load(krow + HALF + half).to(tl.float32)
        g1, g2 = _halves(dk, BN, D)
        d1, d2 = _norm_rope_grad_rows(x1, x2, g1, g2, c, s, EPS, D)
        drow = DQKV + t * (3 * S)
        tl.store(drow + (H + h) * D + half, d1.to(DQKV.dtype.element_ty))
        tl.store(drow + (H + h) * D + HALF + half, d2.to(DQKV.dtype.element_ty))
        col = offs_d[None, :]
        if HAS_VE:
            xv = tl.load(row + (2 * H + h) * D + col).to(tl.float32)
            e = tl.load(VE + t * ve_stride + h * D + col).to(tl.float32)
            tl.store(DLAM + 2 * (nb * H + h), tl.sum(tl.sum(dv * xv, 1), 0))
            tl.store(DLAM + 2 * (nb * H + h) + 1, tl.sum(tl.sum(dv * e, 1), 0))
            tl.store(DVE + t * S + h * D + col, (tl.load(LAM + 1) * dv).to(DVE.dtype.element_ty))
            dv = tl.load(LAM) * dv
        tl.store(drow + (2 * H + h) * D + col, dv.to(DQKV.dtype.element_ty))
    else:
        tl.store(DK + offs_n[:, None] * S + h * D + offs_d[None, :], dk.to(DK.dtype.element_ty))
        tl.store(DV + offs_n[:, None] * S + h * D + offs_d[None, :], dv.to(DV.dtype.element_ty))


@triton.jit
def _attn_bwd_dq(Q, K, V, DO, LSE, DELTA, DOC, LO, HI, DQ, QKV, COS, SIN, DQKV,
                 T, qk_scale, sm_scale, EPS: tl.constexpr, H: tl.constexpr, D: tl.constexpr,
                 BM: tl.constexpr, BN: tl.constexpr, RB: tl.constexpr, FUSED: tl.constexpr):
    h = tl.program_id(0)
    mb = tl.program_id(1)
    offs_m = mb * BM + tl.arange(0, BM)
    offs_d = tl.arange(0, D)
    S: tl.constexpr = H * D
    q = tl.load(Q + offs_m[:, None] * S + h * D + offs_d[None, :])
    do = tl.load(DO + offs_m[:, None] * S + h * D + offs_d[None, :])
    lse = tl.load(LSE + h * T + offs_m)
    delta = tl.load(DELTA + h * T + offs_m)
    doc_q = tl.load(DOC + offs_m)
    lo = tl.load(LO + (mb * BM) // RB)
    hi = tl.load(HI + (mb * BM + BM - 1) // RB)
    dq = tl.zeros([BM, D], tl.float32)
    for start in tl.range(lo, hi, BN):
        offs_n = start + tl.arange(0, BN)
        k = tl.load(K + offs_n[:, None] * S + h * D + offs_d[None, :])
        v = tl.load(V + offs_n[:, None] * S + h * D + offs_d[None, :])
        doc_k = tl.load(DOC + offs_n)
        s = tl.dot(q, tl.trans(k))
        p = tl.exp2(s * qk_scale - lse[:, None])
        p = tl.where(doc_q[:, None] == doc_k[None, :], p, 0.0)
        dp = tl.dot(do, tl.trans(v))
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k)
    dq *= sm_scale
    if FUSED:
        HALF: tl.constexpr = D // 2
        half = tl.arange(0, HALF)[None, :]
        t = offs_m[:, None]
        c = tl.load(COS + t * HALF + half)
        s = tl.load(SIN + t * HALF + half)
        qrow = QKV + t * (3 * S) + h * D
        x1 = tl.load(qrow + half).to(tl.float32)
        x2 = tl.load(qrow + HALF + half).to(tl.float32)
        g1, g2 = _halves(dq, BM, D)
        d1, d2 = _norm_rope_grad_rows(x1, x2, g1, g2, c, s, EPS, D)
        drow = DQKV + t * (3 * S) + h * D
        tl.store(drow + half, d1.to(DQKV.dtype.element_ty))
        tl.store(drow + HALF + half, d2.to(DQKV.dtype.element_ty))
    else:
        tl.store(DQ + offs_m[:, None] * S + h * D + offs_d[None, :], dq.to(DQ.dtype.element_ty))


# tile configuration: (BM, BN, warps, stages) for the forward, dkdv (BM1 queries per step, BN1 keys), dq
CFG = dict(fwd=(64, 64, 4, 3), dkdv=(64, 64, 4, 3), dq=(64, 64, 4, 3))


def attn_forward(q, k, v, doc, lo, hi):
    T, H, D = q.shape
    o = torch.empty_like(q)
    lse = torch.empty(H, T, device=q.device, dtype=torch.float32)
    BM, BN, w, st = CFG["fwd"]
    _attn_fwd[(H, T // BM)](q, k, v, o, lse, doc, lo, hi, T, D ** -0.5 * math.log2(math.e), H, D, BM, BN, RB,
                           num_warps=w, num_stages=st)
    return o, lse


def attn_backward(do, q, k, v, o, lse, doc, lo, hi, prep=None):
    """prep = (qkv, ve, lam, cos (T, D/2), sin) to fuse qkv_prep's backward: returns (dqkv, dve, dlam);
    else (dq, dk, dv)."""
    T, H, D = q.shape
    do = do.contiguous()
    delta = torch.empty(H, T, device=q.device, dtype=torch.float32)
    _attn_delta[(H, T // 64)](o, do, delta, T, H, D, 64, num_warps=4)
    qk_scale, sm_scale = D ** -0.5 * math.log2(math.e), D ** -0.5
    BM1, BN1, w1, s1 = CFG["dkdv"]
    BM2, BN2, w2, s2 = CFG["dq"]
    eps = torch.finfo(torch.float32).eps
    if prep is None:
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        _attn_bwd_dkdv[(H, T // BN1)](q, k, v, do, lse, delta, doc, lo, hi, dk, dv, q, q, 0, lse, lse, lse, q, q, lse,
                                     T, qk_scale, sm_scale, eps, H, D, BM1, BN1, RB, False, False,
                                     num_warps=w1, num_stages=s1)
        _attn_bwd_dq[(H, T // BM2)](q, k, v, do, lse, delta, doc, lo, hi, dq, q, lse, lse, q,
                                   T, qk_scale, sm_scale, eps, H, D, BM2, BN2, RB, False, num_warps=w2, num_stages=s2)
        return dq, dk, dv
    qkv, ve, lam, cos, sin = prep
    dqkv = torch.empty_like(qkv)
    dve = qkv.new_empty(T, H * D, dtype=qkv.dtype if ve is None else ve.dtype)
    nprog = T // BN1
    dlam = lam.new_zeros(nprog * H, 2)
    _attn_bwd_dkdv[(H, nprog)](q, k, v, do, lse, delta, doc, lo, hi, q, q, qkv, qkv if ve is None else ve,
                               0 if ve is None else ve.stride(0), lam, cos, sin, dqkv, dve, dlam,
                               T, qk_scale, sm_scale, eps, H, D, BM1, BN1, RB, True, ve is not None,
                               num_warps=w1, num_stages=s1)
    _attn_bwd_dq[(H, T // BM2)](q, k, v, do, lse, delta, doc, lo, hi, q, qkv, cos, sin, dqkv,
                               T, qk_scale, sm_scale, eps, H, D, BM2, BN2, RB, True, num_warps=w2, num_stages=s2)
    return dqkv, dve, dlam.sum(0)
