"""Experiment (issue 3): doc_attention's backward as ONE pass of FlashAttention-2's five products per tile pair
(QK^T, dO V^T, P^T dO, dS^T Q, dS K) instead of main's seven (dQ pass 3 + dK/dV pass 4), deterministic without
atomics: one program per (head, region), a region being a maximal run of 64-token blocks whose key ranges chain
(document_ranges' [lo, hi) reaching into the next block). A program walks its key blocks in order; for each it
sums dK, dV in registers over the query tiles in its range, and adds each query tile's dS K to that tile's dQ: the
first key block of a query tile computes delta and starts its dQ, later ones read the fp32 partial back (L2), the
last one writes dQ in bf16. Regions are taken longest first (LPT). Against main's two passes on a real reference
micro-batch (65,536 tokens, 6 heads x 128): bits, kernel times (do_bench median).
TRITON_INTERPRET=1 python3 exp/attn_fused_bwd.py --small   (CPU, float32)
python3 exp/attn_fused_bwd.py                              (GPU)"""
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


def regions(lo, hi, B=tp.ATTN_BLOCK):
    """lo, hi (NB,) int32 from document_ranges -> slots (2, NB) int32: row 0 the first block, row 1 one past the
    last block of the region each program slot takes, regions ordered by tile pairs, most first (stable); the
    slots past the number of regions are empty (first = NB, last = 0). On the GPU, no host sync."""
    nb = lo.numel()
    b = torch.arange(nb, device=lo.device)
    link = hi[:-1] > (b[:-1] + 1) * B  # block b's keys reach into block b + 1: one region
    first = torch.cat([link.new_ones(1), ~link])
    rid = torch.cumsum(first.int(), 0) - 1
    work = torch.zeros(nb, dtype=torch.int64, device=lo.device).index_add_(0, rid, ((hi - lo) // B).long())
    start = torch.full((nb,), nb, dtype=torch.int64, device=lo.device).scatter_reduce_(0, rid, b, "amin")
    end = torch.zeros(nb, dtype=torch.int64, device=lo.device).scatter_reduce_(0, rid, b + 1, "amax")
    order = torch.sort(work, descending=True, stable=True).indices
    return torch.stack([start[order], end[order]]).int().contiguous()


@triton.jit
def _attn_bwd_fused(Q, K, V, O, DO, LSE, DELTA, DOC, LO, HI, SLOTS, DQ, DQACC, DK, DV, T, NB,
                    QK_SCALE: tl.constexpr, SCALE: tl.constexpr, WINDOW: tl.constexpr, H: tl.constexpr,
                    HD: tl.constexpr, BN: tl.constexpr, BM: tl.constexpr, RB: tl.constexpr):
    h, slot = tl.program_id(0), tl.program_id(1)
    col = tl.arange(0, HD)[None, :]
    for kb in range(tl.load(SLOTS + slot), tl.load(SLOTS + NB + slot)):
        k0 = kb * BN
        tk = k0 + tl.arange(0, BN)
        k = tl.load(K + tk[:, None] * (H * HD) + h * HD + col)
        v = tl.load(V + tk[:, None] * (H * HD) + h * HD + col)
        dk = tl.zeros([BN, HD], tl.float32)
        dv = tl.zeros([BN, HD], tl.float32)
        for start in tl.range(tl.load(LO + kb), tl.load(HI + kb), BM):
            tq = start + tl.arange(0, BM)
            at = tq[:, None] * (H * HD) + h * HD + col
            q, do = tl.load(Q + at), tl.load(DO + at)
            lo_q, hi_q = tl.load(LO + start // RB) + tq * 0, tl.load(HI + start // RB) + tq * 0
            first, later = lo_q == k0, lo_q != k0  # this key block is the query tile's first: delta, dQ start
            last, more = hi_q == k0 + BN, hi_q != k0 + BN  # its last: dQ done
            o = tl.load(O + at, mask=first[:, None], other=0.0)
            delta = tl.where(first, tl.sum(o.to(tl.float32) * do.to(tl.float32), 1),
                             tl.load(DELTA + h * T + tq, mask=later, other=0.0))
            tl.store(DELTA + h * T + tq, delta, mask=first)
            p_t = tl.exp2(tl.dot(k, tl.trans(q)) * QK_SCALE - tl.load(LSE + h * T + tq)[None, :])  # (keys, queries)
            if not _attn_full(DOC, start, k0, BM, BN, WINDOW):
                p_t = tl.where(_attn_mask(tl.load(DOC + tk), tl.load(DOC + tq), tk, tq, WINDOW), p_t, 0.0)
            dv += tl.dot(p_t.to(do.dtype), do)
            ds_t = (p_t * (tl.dot(v, tl.trans(do)) - delta[None, :])).to(q.dtype)
            dk += tl.dot(ds_t, q)
            dq = tl.dot(tl.trans(ds_t), k, tl.load(DQACC + at, mask=later[:, None], other=0.0))
            tl.store(DQ + at, (dq * SCALE).to(DQ.dtype.element_ty), mask=last[:, None])
            tl.store(DQACC + at, dq, mask=more[:, None])
        tl.store(DK + tk[:, None] * (H * HD) + h * HD + col, (dk * SCALE).to(DK.dtype.element_ty))
        tl.store(DV + tk[:, None] * (H * HD) + h * HD + col, dv.to(DV.dtype.element_ty))
        tl.debug_barrier()  # the next key block reads this one's dQ partials and deltas, maybe in other threads


def backward_fused(do, q, k, v, o, lse, doc, lo, hi, slots, tiles=(64, 4, 2)):
    T, H, hd = q.shape
    nb = T // tp.ATTN_BLOCK
    delta = torch.empty_like(lse)
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    dqacc = q.new_empty(q.shape, dtype=torch.float32)
    BM, warps, stages = tiles
    _attn_bwd_fused[(H, nb)](q, k, v, o, do, lse, delta, doc, lo, hi, slots, dq, dqacc, dk, dv, T, nb,
                             hd ** -0.5 * math.log2(math.e), hd ** -0.5, 0, H, hd, tp.ATTN_BLOCK, BM, tp.ATTN_BLOCK,
                             num_warps=warps, num_stages=stages)
    return dq, dk, dv


def backward_main(do, q, k, v, o, lse, doc, lo, hi):
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
    return dq, dk, dv


def main():
    dev = torch.device("cpu" if SMALL else "cuda")
    dt = torch.float32 if SMALL else torch.bfloat16  # (the CPU interpreter mis-multiplies bf16 in tl.dot)
    torch.manual_seed(0)
    if SMALL:
        T, H, D = 1024, 2, 32
        starts = torch.zeros(T, dtype=torch.bool)
        starts[torch.tensor([0, 70, 100, 200, 250, 256, 600, 640, 1000])] = True
    else:
        cfg = tp.parse_config(["--preset", "reference"], has_gpu=True)
        loader = tp.PackedLoader(tp.resolve_files(cfg.train_files, "train"), cfg, 0, 1, dev, 0)
        for _ in range(3):
            tokens, starts, g = loader.next()
        T, H, D = tokens.numel(), 6, 128
    starts = starts.to(dev)
    doc, pos = tp.document_ids(starts)
    doc, lo, hi = tp.document_ranges(doc, pos, 0)
    slots = regions(lo, hi)
    nreg = int((slots[0] < slots[1]).sum())
    pairs = ((hi - lo) // tp.ATTN_BLOCK).long()
    first_work = [int(pairs[int(a):int(b)].sum()) for a, b in slots[:, :6].t().tolist()]
    out("REGIONS", n=nreg, blocks=lo.numel(), tile_pairs=int(pairs.sum()), largest=first_work)
    q, k, v = (torch.randn(T, H, D, device=dev).to(dt) for _ in range(3))
    o, lse = torch.empty_like(q), q.new_empty(H, T, dtype=torch.float32)
    tp._attn_fwd[(H, T // 64)](q, k, v, o, lse, doc, lo, hi, T, D ** -0.5 * math.log2(math.e), 0, H, D, 64, 64,
                               tp.ATTN_BLOCK, num_warps=4, num_stages=3)
    go = torch.randn(T, H, D, device=dev).to(dt)
    g_m = backward_main(go, q, k, v, o, lse, doc, lo, hi)
    configs = [(64, 4, 2), (32, 4, 2)] if SMALL else [(64, 4, 2), (64, 8, 2), (64, 4, 1), (64, 8, 1), (64, 4, 3), (32, 4, 2),
                                          (32, 4, 3), (32, 8, 2)]
    for t in configs:
        try:
            g_f = backward_fused(go, q, k, v, o, lse, doc, lo, hi, slots, t)
            out("BITS_VS_MAIN", tiles=t, **{n: torch.equal(a, b) for n, a, b in zip(("dq", "dk", "dv"), g_f, g_m)},
                max_abs={n: float((a.float() - b.float()).abs().max()) for n, a, b in zip(("dq", "dk", "dv"), g_f, g_m)})
        except Exception as e:
            out("FAILED", tiles=t, error=repr(e)[:300])
    if SMALL:  # against autograd through plain attention per sequence (float32)
        qr, kr, vr = (t.detach().clone().requires_grad_() for t in (q, k, v))
        lengths = torch.cat([starts.nonzero()[:, 0], torch.tensor([T])]).diff().tolist()
        y = tp.segment_attention(*(t.transpose(0, 1)[None] for t in (qr, kr, vr)), lengths, 0)[0].transpose(0, 1)
        y.backward(go)
        g_f = backward_fused(go, q, k, v, o, lse, doc, lo, hi, slots)
        out("VS_AUTOGRAD", **{n: float((a - b.grad).abs().max()) for n, a, b in zip(("dq", "dk", "dv"), g_f, (qr, kr, vr))})
        return
    from triton.testing import do_bench
    V = {"main_bwd": lambda: backward_main(go, q, k, v, o, lse, doc, lo, hi),
         "regions": lambda: regions(lo, hi)}
    for t in configs:
        V[f"fused_{t}"] = lambda t=t: backward_fused(go, q, k, v, o, lse, doc, lo, hi, slots, t)
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
