"""Experiment (issue 3): doc_attention's kernels with their loops rotated, as FlashAttention-3's intra-warpgroup
pipelining does: the next tile's QK^T product (and in the backward passes its dO V^T product) is issued before the
current tile's softmax and the products that need it, so the tensor cores can work while the softmax runs (the last
tile peeled off the loop). Against train_plm's kernels on one real reference micro-batch (65,536 tokens, 6 heads x
128): bits, kernel times (do_bench median); the backward timings time main's other pass with the rotated one.
python3 exp/attn_rotate.py [--small]"""
import json, math, os, sys
import torch
import triton
import triton.language as tl
sys.path.insert(0, os.getcwd())
import train_plm as tp

_attn_mask, _attn_full = tp._attn_mask, tp._attn_full
SMALL = "--small" in sys.argv


def out(tag, **kw):
    print(tag, json.dumps(kw), flush=True)


@triton.jit
def _step(s, m_i, l_i, acc, V, DOC, tq, start, h, mb, QK_SCALE: tl.constexpr, WINDOW: tl.constexpr, H: tl.constexpr,
          HD: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr):
    tk = start + tl.arange(0, BN)
    col = tl.arange(0, HD)[None, :]
    if not _attn_full(DOC, mb * BM, start, BM, BN, WINDOW):
        s = tl.where(_attn_mask(tl.load(DOC + tq), tl.load(DOC + tk), tq, tk, WINDOW), s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, 1) * QK_SCALE)
    p = tl.exp2(s * QK_SCALE - m_new[:, None])
    alpha = tl.exp2(m_i - m_new)
    l_i = l_i * alpha + tl.sum(p, 1)
    v = tl.load(V + tk[:, None] * (H * HD) + h * HD + col)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
    return m_new, l_i, acc


@triton.jit
def _fwd_rot(Q, K, V, O, LSE, DOC, LO, HI, T, QK_SCALE: tl.constexpr, WINDOW: tl.constexpr, H: tl.constexpr,
             HD: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, RB: tl.constexpr):
    h, mb = tl.program_id(0), tl.program_id(1)
    tq, col = mb * BM + tl.arange(0, BM), tl.arange(0, HD)[None, :]
    q = tl.load(Q + tq[:, None] * (H * HD) + h * HD + col)
    m_i = tl.full([BM], -1.0e30, tl.float32)
    l_i = tl.zeros([BM], tl.float32)
    acc = tl.zeros([BM, HD], tl.float32)
    lo, hi = tl.load(LO + mb * BM // RB), tl.load(HI + (mb * BM + BM - 1) // RB)
    k = tl.load(K + (lo + tl.arange(0, BN))[:, None] * (H * HD) + h * HD + col)
    s = tl.dot(q, tl.trans(k))
    for start in tl.range(lo, hi - BN, BN):
        k = tl.load(K + (start + BN + tl.arange(0, BN))[:, None] * (H * HD) + h * HD + col)
        s_next = tl.dot(q, tl.trans(k))  # the next tile's product, issued before this tile's softmax
        m_i, l_i, acc = _step(s, m_i, l_i, acc, V, DOC, tq, start, h, mb, QK_SCALE, WINDOW, H, HD, BM, BN)
        s = s_next
    m_i, l_i, acc = _step(s, m_i, l_i, acc, V, DOC, tq, hi - BN, h, mb, QK_SCALE, WINDOW, H, HD, BM, BN)
    tl.store(O + tq[:, None] * (H * HD) + h * HD + col, (acc / l_i[:, None]).to(O.dtype.element_ty))
    tl.store(LSE + h * T + tq, m_i + tl.log2(l_i))


@triton.jit
def _dq_step(s, dpv, q, do, k, lse, delta, dq, DOC, tq, start, mb, QK_SCALE: tl.constexpr, WINDOW: tl.constexpr,
             BM: tl.constexpr, BN: tl.constexpr):
    tk = start + tl.arange(0, BN)
    p = tl.exp2(s * QK_SCALE - lse[:, None])
    if not _attn_full(DOC, mb * BM, start, BM, BN, WINDOW):
        p = tl.where(_attn_mask(tl.load(DOC + tq), tl.load(DOC + tk), tq, tk, WINDOW), p, 0.0)
    ds = p * (dpv - delta[:, None])
    return dq + tl.dot(ds.to(k.dtype), k)


@triton.jit
def _dq_rot(Q, K, V, O, DO, LSE, DELTA, DOC, LO, HI, DQ, T, QK_SCALE: tl.constexpr, SCALE: tl.constexpr,
            WINDOW: tl.constexpr, H: tl.constexpr, HD: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr,
            RB: tl.constexpr):
    """train_plm's dQ pass, rotated: the next key tile's two products (QK^T, dO V^T) issued before this tile's."""
    h, mb = tl.program_id(0), tl.program_id(1)
    tq, col = mb * BM + tl.arange(0, BM), tl.arange(0, HD)[None, :]
    at = tq[:, None] * (H * HD) + h * HD + col
    q, do = tl.load(Q + at), tl.load(DO + at)
    lse = tl.load(LSE + h * T + tq)
    delta = tl.sum(tl.load(O + at).to(tl.float32) * do.to(tl.float32), 1)
    tl.store(DELTA + h * T + tq, delta)
    dq = tl.zeros([BM, HD], tl.float32)
    lo, hi = tl.load(LO + mb * BM // RB), tl.load(HI + (mb * BM + BM - 1) // RB)
    rows = (lo + tl.arange(0, BN))[:, None] * (H * HD) + h * HD + col
    k, v = tl.load(K + rows), tl.load(V + rows)
    s, dpv = tl.dot(q, tl.trans(k)), tl.dot(do, tl.trans(v))
    for start in tl.range(lo, hi - BN, BN):
        rows = (start + BN + tl.arange(0, BN))[:, None] * (H * HD) + h * HD + col
        k_next, v_next = tl.load(K + rows), tl.load(V + rows)
        s_next, dpv_next = tl.dot(q, tl.trans(k_next)), tl.dot(do, tl.trans(v_next))
        dq = _dq_step(s, dpv, q, do, k, lse, delta, dq, DOC, tq, start, mb, QK_SCALE, WINDOW, BM, BN)
        s, dpv, k = s_next, dpv_next, k_next
    dq = _dq_step(s, dpv, q, do, k, lse, delta, dq, DOC, tq, hi - BN, mb, QK_SCALE, WINDOW, BM, BN)
    tl.store(DQ + at, (dq * SCALE).to(DQ.dtype.element_ty))


@triton.jit
def _dkdv_step(s_t, dpv_t, q, do, lse, dl, dk, dv, DOC, tk, start, nb, QK_SCALE: tl.constexpr, WINDOW: tl.constexpr,
               BN: tl.constexpr, BM: tl.constexpr):
    tq = start + tl.arange(0, BM)
    p_t = tl.exp2(s_t * QK_SCALE - lse[None, :])
    if not _attn_full(DOC, start, nb * BN, BM, BN, WINDOW):
        p_t = tl.where(_attn_mask(tl.load(DOC + tk), tl.load(DOC + tq), tk, tq, WINDOW), p_t, 0.0)
    dv += tl.dot(p_t.to(do.dtype), do)
    ds_t = p_t * (dpv_t - dl[None, :])
    dk += tl.dot(ds_t.to(q.dtype), q)
    return dk, dv


@triton.jit
def _dkdv_rot(Q, K, V, DO, LSE, DELTA, DOC, LO, HI, DK, DV, T, QK_SCALE: tl.constexpr, SCALE: tl.constexpr,
              WINDOW: tl.constexpr, H: tl.constexpr, HD: tl.constexpr, BN: tl.constexpr, BM: tl.constexpr,
              RB: tl.constexpr):
    """train_plm's dK/dV pass, rotated: the next query tile's two products (K Q^T, V dO^T) issued before this tile's."""
    h, nb = tl.program_id(0), tl.program_id(1)
    tk, col = nb * BN + tl.arange(0, BN), tl.arange(0, HD)[None, :]
    k = tl.load(K + tk[:, None] * (H * HD) + h * HD + col)
    v = tl.load(V + tk[:, None] * (H * HD) + h * HD + col)
    dk = tl.zeros([BN, HD], tl.float32)
    dv = tl.zeros([BN, HD], tl.float32)
    lo, hi = tl.load(LO + nb * BN // RB), tl.load(HI + (nb * BN + BN - 1) // RB)
    tq = lo + tl.arange(0, BM)
    q = tl.load(Q + tq[:, None] * (H * HD) + h * HD + col)
    do = tl.load(DO + tq[:, None] * (H * HD) + h * HD + col)
    s_t, dpv_t = tl.dot(k, tl.trans(q)), tl.dot(v, tl.trans(do))
    for start in tl.range(lo, hi - BM, BM):
        tq = start + BM + tl.arange(0, BM)
        q_next = tl.load(Q + tq[:, None] * (H * HD) + h * HD + col)
        do_next = tl.load(DO + tq[:, None] * (H * HD) + h * HD + col)
        s_next, dpv_next = tl.dot(k, tl.trans(q_next)), tl.dot(v, tl.trans(do_next))
        tq = start + tl.arange(0, BM)
        dk, dv = _dkdv_step(s_t, dpv_t, q, do, tl.load(LSE + h * T + tq), tl.load(DELTA + h * T + tq), dk, dv, DOC,
                            tk, start, nb, QK_SCALE, WINDOW, BN, BM)
        s_t, dpv_t, q, do = s_next, dpv_next, q_next, do_next
    tq = hi - BM + tl.arange(0, BM)
    dk, dv = _dkdv_step(s_t, dpv_t, q, do, tl.load(LSE + h * T + tq), tl.load(DELTA + h * T + tq), dk, dv, DOC, tk,
                        hi - BM, nb, QK_SCALE, WINDOW, BN, BM)
    tl.store(DK + tk[:, None] * (H * HD) + h * HD + col, (dk * SCALE).to(DK.dtype.element_ty))
    tl.store(DV + tk[:, None] * (H * HD) + h * HD + col, dv.to(DV.dtype.element_ty))


def forward(q, k, v, doc, lo, hi, tiles=(64, 64, 4, 3)):
    T, H, hd = q.shape
    o, lse = torch.empty_like(q), q.new_empty(H, T, dtype=torch.float32)
    P, N, warps, stages = tiles
    _fwd_rot[(H, T // P)](q, k, v, o, lse, doc, lo, hi, T, hd ** -0.5 * math.log2(math.e), 0, H, hd, P, N,
                          tp.ATTN_BLOCK, num_warps=warps, num_stages=stages)
    return o, lse



def backward(do, q, k, v, o, lse, doc, lo, hi, dq_t=(64, 64, 4, 2), dkdv_t=(64, 64, 4, 2), rotate=("dq", "dkdv")):
    """main's two backward passes; those named in `rotate` by the rotated kernels."""
    T, H, hd = q.shape
    delta = torch.empty_like(lse)
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    sc = (hd ** -0.5 * math.log2(math.e), hd ** -0.5)
    P, N, warps, stages = dq_t
    (_dq_rot if "dq" in rotate else tp._attn_bwd_dq)[(H, T // P)](
        q, k, v, o, do, lse, delta, doc, lo, hi, dq, T, *sc, 0, H, hd, P, N, tp.ATTN_BLOCK, num_warps=warps,
        num_stages=stages)
    P, N, warps, stages = dkdv_t
    (_dkdv_rot if "dkdv" in rotate else tp._attn_bwd_dkdv)[(H, T // P)](
        q, k, v, do, lse, delta, doc, lo, hi, dk, dv, T, *sc, 0, H, hd, P, N, tp.ATTN_BLOCK, num_warps=warps,
        num_stages=stages)
    return dq, dk, dv

def main():
    dev = torch.device("cpu" if SMALL else "cuda")
    dt = torch.float32 if SMALL else torch.bfloat16  # (the CPU interpreter mis-multiplies bf16 in tl.dot)
    torch.manual_seed(0)
    if SMALL:
        starts = torch.zeros(256, dtype=torch.bool)
        starts[torch.tensor([0, 70, 100, 200, 250])] = True
        T, H, D = 256, 2, 32
    else:
        cfg = tp.parse_config(["--preset", "reference"], has_gpu=True)
        loader = tp.PackedLoader(tp.resolve_files(cfg.train_files, "train"), cfg, 0, 1, dev, 0)
        for _ in range(3):
            tokens, starts, g = loader.next()
        T, H, D = tokens.numel(), 6, 128
    starts = starts.to(dev)
    doc, pos = tp.document_ids(starts)
    doc, lo, hi = tp.document_ranges(doc, pos, 0)
    q, k, v = (torch.randn(T, H, D, device=dev).to(dt) for _ in range(3))
    o_m, lse_m = torch.empty_like(q), q.new_empty(H, T, dtype=torch.float32)
    tp._attn_fwd[(H, T // 64)](q, k, v, o_m, lse_m, doc, lo, hi, T, D ** -0.5 * math.log2(math.e), 0, H, D, 64, 64,
                              tp.ATTN_BLOCK, num_warps=4, num_stages=3)
    o2, lse2 = forward(q, k, v, doc, lo, hi)
    out("BITS_VS_MAIN", o=torch.equal(o2, o_m), lse=torch.equal(lse2, lse_m),
        o_max_abs=float((o2.float() - o_m.float()).abs().max()))
    go = torch.randn(T, H, D, device=dev).to(dt)
    g_m = backward(go, q, k, v, o_m, lse_m, doc, lo, hi, rotate=())
    g_r = backward(go, q, k, v, o_m, lse_m, doc, lo, hi)
    out("BITS_VS_MAIN_BACKWARD", **{n: torch.equal(a, b) for n, a, b in zip(("dq", "dk", "dv"), g_r, g_m)})
    if SMALL:
        return
    from triton.testing import do_bench
    ops = getattr(torch.ops, tp.OPS)
    V = {"main_fwd": lambda: ops.doc_attention(q, k, v, doc, lo, hi, 0)}
    for t in ((64, 64, 4, 3), (64, 64, 4, 2), (64, 64, 4, 4), (64, 64, 8, 3), (128, 64, 8, 3), (64, 32, 4, 3)):
        V[f"rotated_{t}"] = lambda t=t: forward(q, k, v, doc, lo, hi, t)
    V["main_fwd_again"] = V["main_fwd"]
    V["main_bwd"] = lambda: backward(go, q, k, v, o_m, lse_m, doc, lo, hi, rotate=())
    for t in ((64, 64, 4, 2), (64, 64, 4, 3), (64, 64, 8, 2)):
        V[f"rotated_dq_{t}"] = lambda t=t: backward(go, q, k, v, o_m, lse_m, doc, lo, hi, dq_t=t, rotate=("dq",))
        V[f"rotated_dkdv_{t}"] = lambda t=t: backward(go, q, k, v, o_m, lse_m, doc, lo, hi, dkdv_t=t, rotate=("dkdv",))
    V["main_bwd_again"] = V["main_bwd"]
    for name, fn in V.items():
        try:
            fn()
            torch.cuda.synchronize()
            out("TIME", variant=name, ms=round(do_bench(fn, warmup=30, rep=300, return_mode="median"), 4))
        except Exception as e:
            out("TIME_FAILED", variant=name, error=repr(e)[:300])


if __name__ == "__main__":
    main()
