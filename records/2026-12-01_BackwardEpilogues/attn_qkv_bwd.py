"""Experiment (issue 3): qkv_prep's backward (RoPE^T, QK-norm's backward, the value-embedding mix's backward)
in the epilogues of doc_attention's backward kernels: the dQ pass writes the q part of dqkv, the dK/dV pass the
k and v parts, the value-embedding rows' gradient (lam1 * dv) and the lambdas' partial sums. The gradients dq, dk,
dv never go to memory (main: written by attention, read back by qkv_prep's backward kernel). The main loops are
main's; the epilogues round dq, dk, dv to bf16 first, as main's stores do, then compute what _qkv_prep_bwd does.
Against main's chain on a real reference micro-batch (65,536 tokens, 6 heads x 128): max differences, bits
run to run, kernel times (do_bench median).
TRITON_INTERPRET=1 python3 exp/attn_qkv_bwd.py --small   (CPU, float32)
python3 exp/attn_qkv_bwd.py                              (GPU)"""
import json, math, os, sys
import torch
import triton
import triton.language as tl
sys.path.insert(0, os.getcwd())
import train_plm as tp

_attn_mask, _attn_full = tp._attn_mask, tp._attn_full
SMALL = "--small" in sys.argv
EPS = torch.finfo(torch.float32).eps


def out(tag, **kw):
    print(tag, json.dumps(kw), flush=True)


@triton.jit
def _norm_rope_grad_tile(src, g, dst, c, s, half, EPS: tl.constexpr, HD: tl.constexpr, BM: tl.constexpr):
    """_norm_rope_grad with the output gradient g (BM, HD) fp32 in registers: rows src (BM, HD) of the input."""
    g1, g2 = tl.split(tl.permute(tl.reshape(g, (BM, 2, HD // 2)), (0, 2, 1)))
    x1 = tl.load(src + half).to(tl.float32)
    x2 = tl.load(src + HD // 2 + half).to(tl.float32)
    r = tl.rsqrt((tl.sum(x1 * x1, 1) + tl.sum(x2 * x2, 1))[:, None] / HD + EPS)
    n1, n2 = x1 * r, x2 * r
    dn1, dn2 = g1 * c + g2 * s, g2 * c - g1 * s
    m = (tl.sum(dn1 * n1, 1) + tl.sum(dn2 * n2, 1))[:, None] / HD
    tl.store(dst + half, (r * (dn1 - n1 * m)).to(dst.dtype.element_ty))
    tl.store(dst + HD // 2 + half, (r * (dn2 - n2 * m)).to(dst.dtype.element_ty))


@triton.jit
def _norm_rope_grad_x(x1, x2, g, dst, c, s, half, EPS: tl.constexpr, HD: tl.constexpr, BM: tl.constexpr):
    """_norm_rope_grad_tile with the input's halves x1, x2 (BM, HD / 2) already loaded."""
    g1, g2 = tl.split(tl.permute(tl.reshape(g, (BM, 2, HD // 2)), (0, 2, 1)))
    x1, x2 = x1.to(tl.float32), x2.to(tl.float32)
    r = tl.rsqrt((tl.sum(x1 * x1, 1) + tl.sum(x2 * x2, 1))[:, None] / HD + EPS)
    n1, n2 = x1 * r, x2 * r
    dn1, dn2 = g1 * c + g2 * s, g2 * c - g1 * s
    m = (tl.sum(dn1 * n1, 1) + tl.sum(dn2 * n2, 1))[:, None] / HD
    tl.store(dst + half, (r * (dn1 - n1 * m)).to(dst.dtype.element_ty))
    tl.store(dst + HD // 2 + half, (r * (dn2 - n2 * m)).to(dst.dtype.element_ty))


@triton.jit
def _cos_sin(COS, SIN, POS, INVF, t, half, HD: tl.constexpr, TRIG: tl.constexpr):
    """RoPE's cos, sin (len(t), HD / 2) fp32 for tokens t: from the tables, or (TRIG) computed here from each token's
    position and the inverse frequencies, as attention_inputs computes them."""
    if TRIG:
        ang = tl.load(POS + t)[:, None].to(tl.float32) * tl.load(INVF + half)
        return tl.cos(ang), tl.sin(ang)
    return tl.load(COS + t[:, None] * (HD // 2) + half), tl.load(SIN + t[:, None] * (HD // 2) + half)


@triton.jit
def _attn_bwd_dq_qkv(Q, K, V, O, DO, LSE, DELTA, DOC, LO, HI, QKV, COS, SIN, POS, INVF, DQKV, T, QK_SCALE: tl.constexpr,
                     SCALE: tl.constexpr, WINDOW: tl.constexpr, H: tl.constexpr, HD: tl.constexpr, BM: tl.constexpr,
                     BN: tl.constexpr, RB: tl.constexpr, EPS: tl.constexpr, TRIG: tl.constexpr, PREFETCH: tl.constexpr):
    h, mb = tl.program_id(0), tl.program_id(1)
    tq, col = mb * BM + tl.arange(0, BM), tl.arange(0, HD)[None, :]
    at = tq[:, None] * (H * HD) + h * HD + col
    q, do = tl.load(Q + at), tl.load(DO + at)
    lse = tl.load(LSE + h * T + tq)
    delta = tl.sum(tl.load(O + at).to(tl.float32) * do.to(tl.float32), 1)
    tl.store(DELTA + h * T + tq, delta)
    half = tl.arange(0, HD // 2)[None, :]
    row = tq[:, None] * (3 * H * HD) + h * HD
    if PREFETCH:
        x1 = tl.load(QKV + row + half)
        x2 = tl.load(QKV + row + HD // 2 + half)
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
    c, s = _cos_sin(COS, SIN, POS, INVF, tq, half, HD, TRIG)
    g = (dq * SCALE).to(Q.dtype.element_ty).to(tl.float32)
    if PREFETCH:
        _norm_rope_grad_x(x1, x2, g, DQKV + row, c, s, half, EPS, HD, BM)
    else:
        _norm_rope_grad_tile(QKV + row, g, DQKV + row, c, s, half, EPS, HD, BM)


@triton.jit
def _attn_bwd_dkdv_qkv(Q, K, V, DO, LSE, DELTA, DOC, LO, HI, QKV, TOK, VE, LAM, COS, SIN, POS, INVF, DQKV, DVE,
                       DLAM, T, QK_SCALE: tl.constexpr, SCALE: tl.constexpr, WINDOW: tl.constexpr, H: tl.constexpr,
                       HD: tl.constexpr, BN: tl.constexpr, BM: tl.constexpr, RB: tl.constexpr, EPS: tl.constexpr,
                       HAS_VE: tl.constexpr, TRIG: tl.constexpr, PREFETCH: tl.constexpr):
    h, nb = tl.program_id(0), tl.program_id(1)
    tk, col = nb * BN + tl.arange(0, BN), tl.arange(0, HD)[None, :]
    k = tl.load(K + tk[:, None] * (H * HD) + h * HD + col)
    v = tl.load(V + tk[:, None] * (H * HD) + h * HD + col)
    dk = tl.zeros([BN, HD], tl.float32)
    dv = tl.zeros([BN, HD], tl.float32)
    half = tl.arange(0, HD // 2)[None, :]
    row = tk[:, None] * (3 * H * HD)
    if PREFETCH:
        x1 = tl.load(QKV + row + (H + h) * HD + half)
        x2 = tl.load(QKV + row + (H + h) * HD + HD // 2 + half)
    for start in tl.range(tl.load(LO + nb * BN // RB), tl.load(HI + (nb * BN + BN - 1) // RB), BM):
        tq = start + tl.arange(0, BM)
        q = tl.load(Q + tq[:, None] * (H * HD) + h * HD + col)
        p_t = tl.exp2(tl.dot(k, tl.trans(q)) * QK_SCALE - tl.load(LSE + h * T + tq)[None, :])  # (keys, queries)
        if not _attn_full(DOC, start, nb * BN, BM, BN, WINDOW):
            p_t = tl.where(_attn_mask(tl.load(DOC + tk), tl.load(DOC + tq), tk, tq, WINDOW), p_t, 0.0)
        do = tl.load(DO + tq[:, None] * (H * HD) + h * HD + col)
        dv += tl.dot(p_t.to(do.dtype), do)
        ds_t = p_t * (tl.dot(v, tl.trans(do)) - tl.load(DELTA + h * T + tq)[None, :])
        dk += tl.dot(ds_t.to(q.dtype), q)
    c, s = _cos_sin(COS, SIN, POS, INVF, tk, half, HD, TRIG)
    g = (dk * SCALE).to(Q.dtype.element_ty).to(tl.float32)
    if PREFETCH:
        _norm_rope_grad_x(x1, x2, g, DQKV + row + (H + h) * HD, c, s, half, EPS, HD, BN)
    else:
        _norm_rope_grad_tile(QKV + row + (H + h) * HD, g, DQKV + row + (H + h) * HD, c, s, half, EPS, HD, BN)
    g = dv.to(Q.dtype.element_ty).to(tl.float32)
    if HAS_VE:  # this program's share of the lambdas' gradients, summed in program order outside
        x = tl.load(QKV + row + (2 * H + h) * HD + col).to(tl.float32)
        e = tl.load(VE + tl.load(TOK + tk)[:, None] * (H * HD) + h * HD + col).to(tl.float32)
        tl.store(DLAM + 2 * (nb * H + h), tl.sum(tl.sum(g * x, 1), 0))
        tl.store(DLAM + 2 * (nb * H + h) + 1, tl.sum(tl.sum(g * e, 1), 0))
        tl.store(DVE + tk[:, None] * (H * HD) + h * HD + col, (tl.load(LAM + 1) * g).to(DVE.dtype.element_ty))
        g = tl.load(LAM) * g
    tl.store(DQKV + row + (2 * H + h) * HD + col, g.to(DQKV.dtype.element_ty))


def backward_fused(do, q, k, v, o, lse, doc, lo, hi, qkv, tok, ve, lam, cos, sin, pos, invf, tiles=((4, 2), (4, 2)),
                   trig=False, prefetch=False):
    T, H, hd = q.shape
    B = tp.ATTN_BLOCK
    delta = torch.empty_like(lse)
    dqkv = torch.empty_like(qkv)
    dve = qkv.new_empty(T, H * hd)
    dlam = lam.new_zeros(T // B * H, 2)
    sc = (hd ** -0.5 * math.log2(math.e), hd ** -0.5)
    (w1, s1), (w2, s2) = tiles
    _attn_bwd_dq_qkv[(H, T // B)](q, k, v, o, do, lse, delta, doc, lo, hi, qkv, cos, sin, pos, invf, dqkv, T, *sc, 0, H,
                                  hd, B, B, B, EPS, trig, prefetch, num_warps=w1, num_stages=s1)
    _attn_bwd_dkdv_qkv[(H, T // B)](q, k, v, do, lse, delta, doc, lo, hi, qkv, tok, ve, lam, cos, sin, pos, invf,
                                    dqkv, dve, dlam, T, *sc, 0, H, hd, B, B, B, EPS, True, trig, prefetch, num_warps=w2,
                                    num_stages=s2)
    return dqkv, dve, dlam.sum(0)


def backward_main(do, q, k, v, o, lse, doc, lo, hi, qkv, tok, ve, lam, cos, sin, pos=None, invf=None):
    T, H, hd = q.shape
    delta = torch.empty_like(lse)
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    sc = (hd ** -0.5 * math.log2(math.e), hd ** -0.5)
    P, N, warps, stages = tp.ATTN_TILES["dq"]
    tp._attn_bwd_dq[(H, T // P)](q, k, v, o, do, lse, delta, doc, lo, hi, dq, T, *sc, 0, H, hd, P, N, tp.ATTN_BLOCK,
                                 num_warps=warps, num_stages=stages)
    P, N, warps, stages = tp.ATTN_TILES["dkdv"]
    tp._attn_bwd_dkdv[(H, T // P)](q, k, v, do, lse, delta, doc, lo, hi, dk, dv, T, *sc, 0, H, hd, P, N,
                                   tp.ATTN_BLOCK, num_warps=warps, num_stages=stages)
    block, warps = tp.QKV_PREP_TILES["backward"]
    programs = triton.cdiv(T, block)
    dqkv = torch.empty_like(qkv)
    dve = qkv.new_empty(T, H * hd)
    dlam = lam.new_zeros(programs * H, 2)
    tp._qkv_prep_bwd[(H, programs)](qkv, tok, ve, lam, cos, sin, dq, dk, dv, dqkv, dve, dlam, T, EPS, H, hd, True,
                                    block, num_warps=warps)
    return dqkv, dve, dlam.sum(0)


def main():
    dev = torch.device("cpu" if SMALL else "cuda")
    dt = torch.float32 if SMALL else torch.bfloat16  # (the CPU interpreter mis-multiplies bf16 in tl.dot)
    torch.manual_seed(0)
    if SMALL:
        T, H, D = 1024, 2, 32
        starts = torch.zeros(T, dtype=torch.bool)
        starts[torch.tensor([0, 70, 100, 200, 250, 256, 600, 640, 1000])] = True
        tok = torch.randint(4, 33, (T,))
        batches = [(tok, starts)]
    else:
        cfg = tp.parse_config(["--preset", "reference"], has_gpu=True)
        loader = tp.PackedLoader(tp.resolve_files(cfg.train_files, "train"), cfg, 0, 1, dev, 0)
        batches = [loader.next()[:2] for _ in range(4)][2:]
        T, H, D = batches[0][0].numel(), 6, 128
    T4 = ((4, 2), (4, 2))
    configs = [(T4, False, False), (T4, True, False), (T4, False, True), (T4, True, True)] if SMALL else [
        (T4, False, False), (T4, True, False), (T4, False, True), (T4, True, True), (((4, 3), (4, 2)), True, False),
        (((4, 2), (4, 3)), True, False), (((4, 1), (4, 1)), True, False)]
    inv_freq = 1.0 / (10000 ** (torch.arange(0, D, 2, device=dev).float() / D))
    for bi, (tok, starts) in enumerate(batches):
        tok, starts = tok.to(dev), starts.to(dev)
        doc, pos = tp.document_ids(starts)
        doc, lo, hi = tp.document_ranges(doc, pos, 0)
        ang = pos[:, None].float() * inv_freq[None]
        cos, sin = ang.cos().contiguous(), ang.sin().contiguous()
        pos32 = pos.int().contiguous()
        qkv = torch.randn(T, 3 * H * D, device=dev).to(dt)
        ve = torch.randn(33, H * D, device=dev).to(dt)
        lam = torch.tensor([0.6, 0.4], device=dev)
        q, k, v = (torch.empty(T, H, D, device=dev, dtype=dt) for _ in range(3))
        tp._qkv_prep_fwd[(H, T // 64)](qkv, tok, ve, lam, cos, sin, q, k, v, T, EPS, H, D, True, 64, num_warps=8)
        o, lse = torch.empty_like(q), q.new_empty(H, T, dtype=torch.float32)
        tp._attn_fwd[(H, T // 64)](q, k, v, o, lse, doc, lo, hi, T, D ** -0.5 * math.log2(math.e), 0, H, D, 64, 64,
                                   tp.ATTN_BLOCK, num_warps=4, num_stages=3)
        go = torch.randn(T, H, D, device=dev).to(dt)
        args = (go, q, k, v, o, lse, doc, lo, hi, qkv, tok, ve, lam, cos, sin, pos32, inv_freq)
        g_m = backward_main(*args)
        names = ("dqkv", "dve", "dlam")
        for t, trig, pre in configs:
            try:
                g_f = backward_fused(*args, tiles=t, trig=trig, prefetch=pre)
                g_f2 = backward_fused(*args, tiles=t, trig=trig, prefetch=pre)
                diff = {n: float((a.float() - b.float()).abs().max()) for n, a, b in zip(names, g_f, g_m)}
                scale = {n: float(b.float().abs().max()) for n, b in zip(names, g_m)}
                ne = {n: float((a != b).float().mean()) for n, a, b in zip(names, g_f, g_m)}
                out("VS_MAIN", batch=bi, tiles=t, trig=trig, prefetch=pre, max_abs=diff, max_main=scale, frac_differ=ne,
                    same_bits_run_to_run=all(torch.equal(a, b) for a, b in zip(g_f, g_f2)))
            except Exception as e:
                out("FAILED", tiles=t, trig=trig, prefetch=pre, error=repr(e)[:400])
        if SMALL:  # against autograd through qkv_prep_reference and plain attention per sequence (float32)
            qkvr, ver, lamr = (t.detach().clone().requires_grad_() for t in (qkv, ve, lam))
            qr, kr, vr = tp.qkv_prep_reference(qkvr, ver[tok], lamr, cos[:, None], sin[:, None], H)
            lengths = torch.cat([starts.nonzero()[:, 0], torch.tensor([T])]).diff().tolist()
            y = tp.segment_attention(*(t.transpose(0, 1)[None] for t in (qr, kr, vr)), lengths, 0)[0].transpose(0, 1)
            y.backward(go)
            g_f = backward_fused(*args)
            out("VS_AUTOGRAD", dqkv=float((g_f[0] - qkvr.grad).abs().max()),
                dtable=float((tp.sum_by_index(g_f[1], tok, 33) - ver.grad).abs().max()),
                dlam=float((g_f[2] - lamr.grad).abs().max()), grad_scale=float(qkvr.grad.abs().max()))
            continue
        from triton.testing import do_bench
        V = {"main_chain": lambda: backward_main(*args)}
        for t, trig, pre in configs:
            V[f"fused_{t}_trig{int(trig)}_pre{int(pre)}"] = lambda t=t, trig=trig, pre=pre: backward_fused(*args, tiles=t, trig=trig, prefetch=pre)
        V["main_chain_again"] = V["main_chain"]
        for name, fn in V.items():
            try:
                fn()
                torch.cuda.synchronize()
                out("TIME", batch=bi, variant=name, ms=round(do_bench(fn, warmup=30, rep=300, return_mode="median"), 4))
            except Exception as e:
                out("TIME_FAILED", variant=name, error=repr(e)[:300])


if __name__ == "__main__":
    main()
