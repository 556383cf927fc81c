"""Experiment (issue 3): doc_attention's three kernels as persistent programs (a fixed number of programs, each
walking (query or key block, head) work items in turn, optionally with Triton's flattened loop, which overlaps one
item's loads with the previous item's compute) instead of one program per (head, block). The work per item is
train_plm's, so the bits should be the same. Against train_plm's kernels on one real reference micro-batch (65,536
tokens, 6 heads x 128): bits, kernel times (do_bench median). python3 exp/attn_persistent.py [--small]"""
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
def _fwd_p(Q, K, V, O, LSE, DOC, LO, HI, T, QK_SCALE: tl.constexpr, WINDOW: tl.constexpr, H: tl.constexpr,
           HD: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, RB: tl.constexpr, PROGRAMS,
           FLAT: tl.constexpr, HEAD_MAJOR: tl.constexpr):
    col = tl.arange(0, HD)[None, :]
    for item in tl.range(tl.program_id(0), H * (T // BM), PROGRAMS, flatten=FLAT):
        if HEAD_MAJOR:
            h, mb = item // (T // BM), item % (T // BM)
        else:
            h, mb = item % H, item // H
        tq = mb * BM + tl.arange(0, BM)
        q = tl.load(Q + tq[:, None] * (H * HD) + h * HD + col)
        m_i = tl.full([BM], -1.0e30, tl.float32)
        l_i = tl.zeros([BM], tl.float32)
        acc = tl.zeros([BM, HD], tl.float32)
        for start in tl.range(tl.load(LO + mb * BM // RB), tl.load(HI + (mb * BM + BM - 1) // RB), BN):
            tk = start + tl.arange(0, BN)
            k = tl.load(K + tk[:, None] * (H * HD) + h * HD + col)
            s = tl.dot(q, tl.trans(k))
            if not _attn_full(DOC, mb * BM, start, BM, BN, WINDOW):
                s = tl.where(_attn_mask(tl.load(DOC + tq), tl.load(DOC + tk), tq, tk, WINDOW), s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 1) * QK_SCALE)
            p = tl.exp2(s * QK_SCALE - m_new[:, None])
            alpha = tl.exp2(m_i - m_new)
            l_i = l_i * alpha + tl.sum(p, 1)
            v = tl.load(V + tk[:, None] * (H * HD) + h * HD + col)
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
            m_i = m_new
        tl.store(O + tq[:, None] * (H * HD) + h * HD + col, (acc / l_i[:, None]).to(O.dtype.element_ty))
        tl.store(LSE + h * T + tq, m_i + tl.log2(l_i))


@triton.jit
def _dq_p(Q, K, V, O, DO, LSE, DELTA, DOC, LO, HI, DQ, T, QK_SCALE: tl.constexpr, SCALE: tl.constexpr,
          WINDOW: tl.constexpr, H: tl.constexpr, HD: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr,
          RB: tl.constexpr, PROGRAMS, FLAT: tl.constexpr, HEAD_MAJOR: tl.constexpr):
    col = tl.arange(0, HD)[None, :]
    for item in tl.range(tl.program_id(0), H * (T // BM), PROGRAMS, flatten=FLAT):
        if HEAD_MAJOR:
            h, mb = item // (T // BM), item % (T // BM)
        else:
            h, mb = item % H, item // H
        tq = mb * BM + tl.arange(0, BM)
        at = tq[:, None] * (H * HD) + h * HD + col
        q, do = tl.load(Q + at), tl.load(DO + at)
        lse = tl.load(LSE + h * T + tq)
        delta = tl.sum(tl.load(O + at).to(tl.float32) * do.to(tl.float32), 1)
        tl.store(DELTA + h * T + tq, delta)
        dq = tl.zeros([BM, HD], tl.float32)
        for start in tl.range(tl.load(LO + mb * BM // RB), tl.load(HI + (mb * BM + BM - 1) // RB), BN):
            tk = start + tl.arange(0, BN)
            k = tl.load(K + tk[:, None] * (H * HD) + h * HD + col)
            v = tl.load(V + tk[:, None] * (H * HD) + h * HD + col)
            p = tl.exp2(tl.dot(q, tl.trans(k)) * QK_SCALE - lse[:, None])
            if not _attn_full(DOC, mb * BM, start, BM, BN, WINDOW):
                p = tl.where(_attn_mask(tl.load(DOC + tq), tl.load(DOC + tk), tq, tk, WINDOW), p, 0.0)
            ds = p * (tl.dot(do, tl.trans(v)) - delta[:, None])
            dq += tl.dot(ds.to(k.dtype), k)
        tl.store(DQ + at, (dq * SCALE).to(DQ.dtype.element_ty))


@triton.jit
def _dkdv_p(Q, K, V, DO, LSE, DELTA, DOC, LO, HI, DK, DV, T, QK_SCALE: tl.constexpr, SCALE: tl.constexpr,
            WINDOW: tl.constexpr, H: tl.constexpr, HD: tl.constexpr, BN: tl.constexpr, BM: tl.constexpr,
            RB: tl.constexpr, PROGRAMS, FLAT: tl.constexpr, HEAD_MAJOR: tl.constexpr):
    col = tl.arange(0, HD)[None, :]
    for item in tl.range(tl.program_id(0), H * (T // BN), PROGRAMS, flatten=FLAT):
        if HEAD_MAJOR:
            h, nb = item // (T // BN), item % (T // BN)
        else:
            h, nb = item % H, item // H
        tk = nb * BN + tl.arange(0, BN)
        k = tl.load(K + tk[:, None] * (H * HD) + h * HD + col)
        v = tl.load(V + tk[:, None] * (H * HD) + h * HD + col)
        dk = tl.zeros([BN, HD], tl.float32)
        dv = tl.zeros([BN, HD], tl.float32)
        for start in tl.range(tl.load(LO + nb * BN // RB), tl.load(HI + (nb * BN + BN - 1) // RB), BM):
            tq = start + tl.arange(0, BM)
            q = tl.load(Q + tq[:, None] * (H * HD) + h * HD + col)
            p_t = tl.exp2(tl.dot(k, tl.trans(q)) * QK_SCALE - tl.load(LSE + h * T + tq)[None, :])
            if not _attn_full(DOC, start, nb * BN, BM, BN, WINDOW):
                p_t = tl.where(_attn_mask(tl.load(DOC + tk), tl.load(DOC + tq), tk, tq, WINDOW), p_t, 0.0)
            do = tl.load(DO + tq[:, None] * (H * HD) + h * HD + col)
            dv += tl.dot(p_t.to(do.dtype), do)
            ds_t = p_t * (tl.dot(v, tl.trans(do)) - tl.load(DELTA + h * T + tq)[None, :])
            dk += tl.dot(ds_t.to(q.dtype), q)
        tl.store(DK + tk[:, None] * (H * HD) + h * HD + col, (dk * SCALE).to(DK.dtype.element_ty))
        tl.store(DV + tk[:, None] * (H * HD) + h * HD + col, dv.to(DV.dtype.element_ty))


def programs_for(q, per_sm):
    sms = torch.cuda.get_device_properties(q.device).multi_processor_count if q.is_cuda else 2
    return sms * per_sm


def forward(q, k, v, doc, lo, hi, tiles=(64, 64, 4, 3), per_sm=4, flat=False, head_major=False):
    T, H, hd = q.shape
    o, lse = torch.empty_like(q), q.new_empty(H, T, dtype=torch.float32)
    P, N, warps, stages = tiles
    n = programs_for(q, per_sm)
    _fwd_p[(n,)](q, k, v, o, lse, doc, lo, hi, T, hd ** -0.5 * math.log2(math.e), 0, H, hd, P, N, tp.ATTN_BLOCK,
                 n, flat, head_major, num_warps=warps, num_stages=stages)
    return o, lse


def backward(do, q, k, v, o, lse, doc, lo, hi, dq_t=(64, 64, 4, 2), dkdv_t=(64, 64, 4, 2), per_sm=4, flat=False,
             head_major=False):
    T, H, hd = q.shape
    delta = torch.empty_like(lse)
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    scales = (hd ** -0.5 * math.log2(math.e), hd ** -0.5)
    n = programs_for(q, per_sm)
    P, N, warps, stages = dq_t
    _dq_p[(n,)](q, k, v, o, do, lse, delta, doc, lo, hi, dq, T, *scales, 0, H, hd, P, N, tp.ATTN_BLOCK, n, flat,
                head_major, num_warps=warps, num_stages=stages)
    P, N, warps, stages = dkdv_t
    _dkdv_p[(n,)](q, k, v, do, lse, delta, doc, lo, hi, dk, dv, T, *scales, 0, H, hd, P, N, tp.ATTN_BLOCK, n, flat,
                  head_major, num_warps=warps, num_stages=stages)
    return dq, dk, dv


def main():
    dev = torch.device("cpu" if SMALL else "cuda")
    bf = torch.bfloat16
    torch.manual_seed(0)
    if SMALL:
        lengths = [70, 30, 100, 50, 6]
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
    q, k, v, go = (torch.randn(T, H, D, device=dev).to(bf) for _ in range(4))
    if SMALL:  # train_plm's kernels through the interpreter
        S = triton.cdiv
        o_m, lse_m = torch.empty_like(q), q.new_empty(H, T, dtype=torch.float32)
        tp._attn_fwd[(H, T // 64)](q, k, v, o_m, lse_m, doc, lo, hi, T, D ** -0.5 * math.log2(math.e), 0, H, D, 64, 64,
                                  tp.ATTN_BLOCK)
        delta = torch.empty_like(lse_m)
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        sc = (D ** -0.5 * math.log2(math.e), D ** -0.5)
        tp._attn_bwd_dq[(H, T // 64)](q, k, v, o_m, go, lse_m, delta, doc, lo, hi, dq, T, *sc, 0, H, D, 64, 64, tp.ATTN_BLOCK)
        tp._attn_bwd_dkdv[(H, T // 64)](q, k, v, go, lse_m, delta, doc, lo, hi, dk, dv, T, *sc, 0, H, D, 64, 64, tp.ATTN_BLOCK)
        g_m = (dq, dk, dv)
    else:
        ops = getattr(torch.ops, tp.OPS)
        o_m, lse_m = ops.doc_attention(q, k, v, doc, lo, hi, 0)
        g_m = ops.doc_attention_backward(go, q, k, v, o_m, lse_m, doc, lo, hi, 0)
    for flat, hm in ((False, False), (True, False), (False, True)):
        try:
            o2, lse2 = forward(q, k, v, doc, lo, hi, per_sm=1, flat=flat, head_major=hm)
            g2 = backward(go, q, k, v, o_m, lse_m, doc, lo, hi, per_sm=1, flat=flat, head_major=hm)
            out("BITS_VS_MAIN", flat=flat, head_major=hm, o=torch.equal(o2, o_m), lse=torch.equal(lse2, lse_m),
                **{n: torch.equal(a, b) for n, a, b in zip(("dq", "dk", "dv"), g2, g_m)})
        except Exception as e:
            out("FAILED", flat=flat, head_major=hm, error=repr(e)[:400])
    if SMALL:
        return
    from triton.testing import do_bench
    V = {"main_fwd": lambda: ops.doc_attention(q, k, v, doc, lo, hi, 0),
         "main_bwd": lambda: ops.doc_attention_backward(go, q, k, v, o_m, lse_m, doc, lo, hi, 0)}
    for per_sm in (1, 2, 4, 8):
        for flat in (False, True):
            for hm in (False, True):
                V[f"fwd_p{per_sm}_flat{int(flat)}_hm{int(hm)}"] = (
                    lambda per_sm=per_sm, flat=flat, hm=hm: forward(q, k, v, doc, lo, hi, per_sm=per_sm, flat=flat, head_major=hm))
                V[f"bwd_p{per_sm}_flat{int(flat)}_hm{int(hm)}"] = (
                    lambda per_sm=per_sm, flat=flat, hm=hm: backward(go, q, k, v, o_m, lse_m, doc, lo, hi, per_sm=per_sm, flat=flat, head_major=hm))
    for name, fn in V.items():
        try:
            fn()
            torch.cuda.synchronize()
            out("TIME", variant=name, ms=round(do_bench(fn, warmup=30, rep=200, return_mode="median"), 4))
        except Exception as e:
            out("TIME_FAILED", variant=name, error=repr(e)[:300])


if __name__ == "__main__":
    main()
