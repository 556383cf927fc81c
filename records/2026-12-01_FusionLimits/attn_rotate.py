"""Experiment (issue 3): doc_attention's forward with its loop rotated, as FlashAttention-3's intra-warpgroup
pipelining does: the next key tile's QK^T product is issued before the current tile's softmax and PV product, so
the tensor cores can work while the softmax runs (the last tile peeled off the loop). Against train_plm's forward on
one real reference micro-batch (65,536 tokens, 6 heads x 128): bits, kernel times (do_bench median).
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


def forward(q, k, v, doc, lo, hi, tiles=(64, 64, 4, 3)):
    T, H, hd = q.shape
    o, lse = torch.empty_like(q), q.new_empty(H, T, dtype=torch.float32)
    P, N, warps, stages = tiles
    _fwd_rot[(H, T // P)](q, k, v, o, lse, doc, lo, hi, T, hd ** -0.5 * math.log2(math.e), 0, H, hd, P, N,
                          tp.ATTN_BLOCK, num_warps=warps, num_stages=stages)
    return o, lse


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
    if SMALL:
        return
    from triton.testing import do_bench
    ops = getattr(torch.ops, tp.OPS)
    V = {"main_fwd": lambda: ops.doc_attention(q, k, v, doc, lo, hi, 0)}
    for t in ((64, 64, 4, 3), (64, 64, 4, 2), (64, 64, 4, 4), (64, 64, 8, 3), (128, 64, 8, 3), (64, 32, 4, 3)):
        V[f"rotated_{t}"] = lambda t=t: forward(q, k, v, doc, lo, hi, t)
    V["main_fwd_again"] = V["main_fwd"]
    for name, fn in V.items():
        try:
            fn()
            torch.cuda.synchronize()
            out("TIME", variant=name, ms=round(do_bench(fn, warmup=30, rep=300, return_mode="median"), 4))
        except Exception as e:
            out("TIME_FAILED", variant=name, error=repr(e)[:300])


if __name__ == "__main__":
    main()
