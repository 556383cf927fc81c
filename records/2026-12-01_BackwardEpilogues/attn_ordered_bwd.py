"""Experiment (issue 3): doc_attention's backward as ONE pass of five products per tile pair (QK^T, dO V^T,
P^T dO, dS^T Q, dS K) in main's dK/dV grid (one program per head and 64-key block), with each query tile's dQ
partials added in key-block order: a per-(head, query tile) turn counter, the program whose turn it is reads the
fp32 partial, adds its dS K in the product's accumulator (as main's dQ loop does), writes it back (or dQ in bf16
if it is the tile's last key block) and passes the turn on (acquire / release atomics; FlashAttention-3's
deterministic backward orders its dQ adds the same way). A program only ever waits on a lower program id.
delta = rowsum(o * do): own kernel first (OWN_DELTA=0), or recomputed in every tile pair (OWN_DELTA=1).
TRITON_INTERPRET=1 python3 exp/attn_ordered_bwd.py --small   (CPU, float32)
python3 exp/attn_ordered_bwd.py                              (GPU)"""
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
def _attn_delta(O, DO, DELTA, T, H: tl.constexpr, HD: tl.constexpr, BM: tl.constexpr):
    h, mb = tl.program_id(0), tl.program_id(1)
    tq, col = mb * BM + tl.arange(0, BM), tl.arange(0, HD)[None, :]
    at = tq[:, None] * (H * HD) + h * HD + col
    tl.store(DELTA + h * T + tq, tl.sum(tl.load(O + at).to(tl.float32) * tl.load(DO + at).to(tl.float32), 1))


@triton.jit
def _attn_bwd_ordered(Q, K, V, O, DO, LSE, DELTA, DOC, LO, HI, DQ, DQACC, TURN, DK, DV, T,
                      QK_SCALE: tl.constexpr, SCALE: tl.constexpr, WINDOW: tl.constexpr, H: tl.constexpr,
                      HD: tl.constexpr, BN: tl.constexpr, BM: tl.constexpr, RB: tl.constexpr,
                      OWN_DELTA: tl.constexpr, SPIN_ASM: tl.constexpr, NT: tl.constexpr):
    h, nb = tl.program_id(0), tl.program_id(1)
    k0 = nb * BN
    tk, col = k0 + tl.arange(0, BN), tl.arange(0, HD)[None, :]
    k = tl.load(K + tk[:, None] * (H * HD) + h * HD + col)
    v = tl.load(V + tk[:, None] * (H * HD) + h * HD + col)
    dk = tl.zeros([BN, HD], tl.float32)
    dv = tl.zeros([BN, HD], tl.float32)
    one = tl.arange(0, NT) * 0  # one value per thread: the inline asm below runs once in each
    for start in tl.range(tl.load(LO + k0 // RB), tl.load(HI + (k0 + BN - 1) // RB), BM):
        tq = start + tl.arange(0, BM)
        at = tq[:, None] * (H * HD) + h * HD + col
        q, do = tl.load(Q + at), tl.load(DO + at)
        if OWN_DELTA:
            delta = tl.sum(tl.load(O + at).to(tl.float32) * do.to(tl.float32), 1)
        else:
            delta = tl.load(DELTA + h * T + tq)
        p_t = tl.exp2(tl.dot(k, tl.trans(q)) * QK_SCALE - tl.load(LSE + h * T + tq)[None, :])  # (keys, queries)
        if not _attn_full(DOC, start, k0, BM, BN, WINDOW):
            p_t = tl.where(_attn_mask(tl.load(DOC + tk), tl.load(DOC + tq), tk, tq, WINDOW), p_t, 0.0)
        dv += tl.dot(p_t.to(do.dtype), do)
        ds_t = (p_t * (tl.dot(v, tl.trans(do)) - delta[None, :])).to(q.dtype)
        dk += tl.dot(ds_t, q)
        # this query tile's dQ: key blocks add their dS K in order (BM == RB: tile = block)
        qb = start // RB
        turn = (k0 - tl.load(LO + qb)) // BN
        lock = TURN + h * (T // RB) + qb
        if SPIN_ASM:  # a loop of Triton's own here keeps the pipeliner from prefetching this loop's tiles
            seen = tl.inline_asm_elementwise(
                "{\n.reg .pred p;\nWAIT:\nld.global.acquire.gpu.b32 $0, [$1];\nsetp.lt.s32 p, $0, $2;\n@p bra WAIT;\n}",
                "=r,l,r", [lock + one, one * 0 + turn], dtype=tl.int32, is_pure=False, pack=1)
        else:
            while tl.atomic_add(lock, 0, sem="acquire") < turn:  # (turn 0: never waits)
                pass
        acc = tl.load(DQACC + at, mask=tq[:, None] * 0 + turn > 0, other=0.0, cache_modifier=".cg")
        dq = tl.dot(tl.trans(ds_t), k, acc)
        hi_q = tl.load(HI + qb)
        tl.store(DQ + at, (dq * SCALE).to(DQ.dtype.element_ty), mask=tq[:, None] * 0 + k0 + BN == hi_q)
        tl.store(DQACC + at, dq, mask=tq[:, None] * 0 + k0 + BN != hi_q, cache_modifier=".cg")
        # every thread's part of the partial is written before the turn passes (bar.sync as inline asm: Triton's
        # debug_barrier keeps the pipeliner from prefetching this loop's tiles)
        if SPIN_ASM:
            tl.inline_asm_elementwise("bar.sync 0;\nmov.u32 $0, 0;", "=r,r", [one], dtype=tl.int32, is_pure=False, pack=1)
        else:
            tl.debug_barrier()
        tl.atomic_xchg(lock, turn + 1, sem="release", mask=k0 + BN != hi_q)
    tl.store(DK + tk[:, None] * (H * HD) + h * HD + col, (dk * SCALE).to(DK.dtype.element_ty))
    tl.store(DV + tk[:, None] * (H * HD) + h * HD + col, dv.to(DV.dtype.element_ty))


def backward_ordered(do, q, k, v, o, lse, doc, lo, hi, tiles=(4, 2), own_delta=False):
    T, H, hd = q.shape
    B = tp.ATTN_BLOCK
    delta = torch.empty_like(lse)
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    dqacc = q.new_empty(q.shape, dtype=torch.float32)
    turn = torch.zeros(H, T // B, dtype=torch.int32, device=q.device)
    if not own_delta:
        _attn_delta[(H, T // B)](o, do, delta, T, H, hd, B, num_warps=4)
    warps, stages = tiles
    _attn_bwd_ordered[(H, T // B)](q, k, v, o, do, lse, delta, doc, lo, hi, dq, dqacc, turn, dk, dv, T,
                                   hd ** -0.5 * math.log2(math.e), hd ** -0.5, 0, H, hd, B, B, B, int(own_delta), int(q.is_cuda), 32 * warps,
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
        batches = [starts]
    else:
        cfg = tp.parse_config(["--preset", "reference"], has_gpu=True)
        loader = tp.PackedLoader(tp.resolve_files(cfg.train_files, "train"), cfg, 0, 1, dev, 0)
        batches = [loader.next()[1] for _ in range(4)][2:]
        T, H, D = batches[0].numel(), 6, 128
    configs = [((4, 2), False), ((4, 2), True)] if SMALL else [
        ((4, 2), False), ((8, 2), False), ((4, 3), False), ((8, 3), False), ((4, 1), False), ((4, 2), True),
        ((8, 2), True)]
    for bi, starts in enumerate(batches):
        starts = starts.to(dev)
        doc, pos = tp.document_ids(starts)
        doc, lo, hi = tp.document_ranges(doc, pos, 0)
        q, k, v = (torch.randn(T, H, D, device=dev).to(dt) for _ in range(3))
        o, lse = torch.empty_like(q), q.new_empty(H, T, dtype=torch.float32)
        tp._attn_fwd[(H, T // 64)](q, k, v, o, lse, doc, lo, hi, T, D ** -0.5 * math.log2(math.e), 0, H, D, 64, 64,
                                   tp.ATTN_BLOCK, num_warps=4, num_stages=3)
        go = torch.randn(T, H, D, device=dev).to(dt)
        g_m = backward_main(go, q, k, v, o, lse, doc, lo, hi)
        for t, own in configs:
            try:
                for rep in range(2 if SMALL else 5):  # the same bits every run
                    g_f = backward_ordered(go, q, k, v, o, lse, doc, lo, hi, t, own)
                    if not SMALL:
                        torch.cuda.synchronize()
                    same = {n: torch.equal(a, b) for n, a, b in zip(("dq", "dk", "dv"), g_f, g_m)}
                    if not all(same.values()) or rep == 0:
                        out("BITS_VS_MAIN", batch=bi, tiles=t, own_delta=own, rep=rep, **same,
                            max_abs={n: float((a.float() - b.float()).abs().max())
                                     for n, a, b in zip(("dq", "dk", "dv"), g_f, g_m)})
            except Exception as e:
                out("FAILED", tiles=t, own_delta=own, error=repr(e)[:400])
        if SMALL:  # against autograd through plain attention per sequence (float32)
            qr, kr, vr = (t.detach().clone().requires_grad_() for t in (q, k, v))
            lengths = torch.cat([starts.nonzero()[:, 0], torch.tensor([T])]).diff().tolist()
            y = tp.segment_attention(*(t.transpose(0, 1)[None] for t in (qr, kr, vr)), lengths, 0)[0].transpose(0, 1)
            y.backward(go)
            g_f = backward_ordered(go, q, k, v, o, lse, doc, lo, hi)
            out("VS_AUTOGRAD", **{n: float((a - b.grad).abs().max()) for n, a, b in zip(("dq", "dk", "dv"), g_f, (qr, kr, vr))})
            continue
        from triton.testing import do_bench
        V = {"main_bwd": lambda: backward_main(go, q, k, v, o, lse, doc, lo, hi)}
        for t, own in configs:
            V[f"ordered_{t}_own{int(own)}"] = lambda t=t, own=own: backward_ordered(go, q, k, v, o, lse, doc, lo, hi, t, own)
        V["delta_only"] = lambda: _attn_delta[(H, T // 64)](o, go, lse.clone(), T, H, D, 64, num_warps=4)
        V["main_bwd_again"] = V["main_bwd"]
        for name, fn in V.items():
            try:
                fn()
                torch.cuda.synchronize()
                out("TIME", batch=bi, variant=name, ms=round(do_bench(fn, warmup=30, rep=300, return_mode="median"), 4))
            except Exception as e:
                out("TIME_FAILED", variant=name, error=repr(e)[:300])


if __name__ == "__main__":
    main()
