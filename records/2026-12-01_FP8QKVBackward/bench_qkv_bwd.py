"""Experiment (issue 3): where QKVProductFP8's backward kernel spends its time (store variants, tiles), and
the 128 x 128 weight-scale layout cuBLAS reads (the input gradient disagreed with the emulation by 30%).
python3 exp/bench_qkv_bwd.py"""
import json, os, sys
import torch
import triton
import triton.language as tl
sys.path.insert(0, os.getcwd())
import train_plm as tp
from triton.testing import do_bench


def out(tag, **kw):
    print(tag, json.dumps(kw), flush=True)


@triton.jit
def _norm_rope_grad(src, grad, c, s, half, live, EPS: tl.constexpr, HD: tl.constexpr):
    """_norm_rope's backward: the rows' input src and output gradient grad -> the input gradient's halves."""
    x1 = tl.load(src + half, mask=live).to(tl.float32)
    x2 = tl.load(src + HD // 2 + half, mask=live).to(tl.float32)
    r = tl.rsqrt((tl.sum(x1 * x1, 1) + tl.sum(x2 * x2, 1))[:, None] / HD + EPS)
    g1 = tl.load(grad + half, mask=live).to(tl.float32)
    g2 = tl.load(grad + HD // 2 + half, mask=live).to(tl.float32)
    n1, n2 = x1 * r, x2 * r
    dn1, dn2 = g1 * c + g2 * s, g2 * c - g1 * s  # RoPE's transpose: the inverse rotation
    m = (tl.sum(dn1 * n1, 1) + tl.sum(dn2 * n2, 1))[:, None] / HD  # RMSNorm's backward
    return r * (dn1 - n1 * m), r * (dn2 - n2 * m)

@triton.jit
def _store_grad(d1, d2, dqkv, g8, gs, g8t, gts, t, half, live, col, pid, T, W: tl.constexpr,
                HD: tl.constexpr, FP8: tl.constexpr, BLOCK: tl.constexpr):
    # FP8 modes: 0 bf16; 1 rows; 2 cols; 3 rows + cols; 4 bf16 + rows; 5 rows + cols via tl.trans
    if FP8 == 1 or FP8 == 3 or FP8 == 4 or FP8 == 5:
        rs = tl.maximum(tl.maximum(tl.max(tl.abs(d1), 1), tl.max(tl.abs(d2), 1)), 1e-30) / 448.0
        tl.store(gs + col // HD * T + t, rs[:, None], mask=live)
        tl.store(g8 + t * W + col + half, (d1 / rs[:, None]).to(g8.dtype.element_ty), mask=live)
        tl.store(g8 + t * W + col + HD // 2 + half, (d2 / rs[:, None]).to(g8.dtype.element_ty), mask=live)
    if FP8 == 2 or FP8 == 3 or FP8 == 5:
        cs1 = tl.maximum(tl.max(tl.abs(d1), 0), 1e-30) / 448.0
        cs2 = tl.maximum(tl.max(tl.abs(d2), 0), 1e-30) / 448.0
        tl.store(gts + pid * W + col + half, cs1[None, :])
        tl.store(gts + pid * W + col + HD // 2 + half, cs2[None, :])
        if FP8 == 5:
            hT = tl.arange(0, HD // 2)[:, None]
            tT = pid * BLOCK + tl.arange(0, BLOCK)[None, :]
            tl.store(g8t + (col + hT) * T + tT, tl.trans((d1 / cs1[None, :]).to(g8t.dtype.element_ty)))
            tl.store(g8t + (col + HD // 2 + hT) * T + tT, tl.trans((d2 / cs2[None, :]).to(g8t.dtype.element_ty)))
        else:
            tl.store(g8t + (col + half) * T + t, (d1 / cs1[None, :]).to(g8t.dtype.element_ty), mask=live)
            tl.store(g8t + (col + HD // 2 + half) * T + t, (d2 / cs2[None, :]).to(g8t.dtype.element_ty), mask=live)
    if FP8 == 0 or FP8 == 4:
        tl.store(dqkv + t * W + col + half, d1.to(dqkv.dtype.element_ty), mask=live)
        tl.store(dqkv + t * W + col + HD // 2 + half, d2.to(dqkv.dtype.element_ty), mask=live)


@triton.jit
def _qkv_prep_fwd(qkv, tok, ve, lam, cos, sin, q, k, v, T, EPS: tl.constexpr, H: tl.constexpr,
                  HD: tl.constexpr, HAS_VE: tl.constexpr, BLOCK: tl.constexpr):
    j = tl.program_id(0)  # head; consecutive programs share tokens (and their cos, sin)
    t = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)[:, None]
    half, col, live = tl.arange(0, HD // 2)[None, :], tl.arange(0, HD)[None, :], t < T
    c = tl.load(cos + t * (HD // 2) + half, mask=live)
    s = tl.load(sin + t * (HD // 2) + half, mask=live)
    row, out = qkv + t * (3 * H * HD), t * (H * HD) + j * HD
    _norm_rope(row + j * HD, q + out, c, s, half, live, EPS, HD)
    _norm_rope(row + (H + j) * HD, k + out, c, s, half, live, EPS, HD)
    x = tl.load(row + (2 * H + j) * HD + col, mask=live).to(tl.float32)
    if HAS_VE:
        e = tl.load(ve + tl.load(tok + t, mask=live) * (H * HD) + j * HD + col, mask=live).to(tl.float32)
        x = tl.load(lam) * x + tl.load(lam + 1) * e
    tl.store(v + out + col, x.to(v.dtype.element_ty), mask=live)

@triton.jit
def _qkv_prep_bwd(qkv, tok, ve, lam, cos, sin, dq, dk, dv, dqkv, g8, gs, g8t, gts, dve, dlam, T,
                  EPS: tl.constexpr, H: tl.constexpr, HD: tl.constexpr, HAS_VE: tl.constexpr, FP8: tl.constexpr,
                  BLOCK: tl.constexpr):
    j, pid = tl.program_id(0), tl.program_id(1)
    t = pid * BLOCK + tl.arange(0, BLOCK)[:, None]
    half, live = tl.arange(0, HD // 2)[None, :], t < T
    c = tl.load(cos + t * (HD // 2) + half, mask=live)
    s = tl.load(sin + t * (HD // 2) + half, mask=live)
    row, out = qkv + t * (3 * H * HD), t * (H * HD) + j * HD
    d1, d2 = _norm_rope_grad(row + j * HD, dq + out, c, s, half, live, EPS, HD)
    _store_grad(d1, d2, dqkv, g8, gs, g8t, gts, t, half, live, j * HD, pid, T, 3 * H * HD, HD, FP8, BLOCK)
    d1, d2 = _norm_rope_grad(row + (H + j) * HD, dk + out, c, s, half, live, EPS, HD)
    _store_grad(d1, d2, dqkv, g8, gs, g8t, gts, t, half, live, (H + j) * HD, pid, T, 3 * H * HD, HD, FP8, BLOCK)
    g1 = tl.load(dv + out + half, mask=live).to(tl.float32)
    g2 = tl.load(dv + out + HD // 2 + half, mask=live).to(tl.float32)
    if HAS_VE:  # this program's share of the lambdas' gradients, summed in program order outside
        col = (2 * H + j) * HD
        x1 = tl.load(row + col + half, mask=live).to(tl.float32)
        x2 = tl.load(row + col + HD // 2 + half, mask=live).to(tl.float32)
        e = ve + tl.load(tok + t, mask=live) * (H * HD) + j * HD
        e1 = tl.load(e + half, mask=live).to(tl.float32)
        e2 = tl.load(e + HD // 2 + half, mask=live).to(tl.float32)
        tl.store(dlam + 2 * (pid * H + j), tl.sum(tl.sum(g1 * x1, 1), 0) + tl.sum(tl.sum(g2 * x2, 1), 0))
        tl.store(dlam + 2 * (pid * H + j) + 1, tl.sum(tl.sum(g1 * e1, 1), 0) + tl.sum(tl.sum(g2 * e2, 1), 0))
        l0, l1 = tl.load(lam), tl.load(lam + 1)
        tl.store(dve + out + half, (l1 * g1).to(dve.dtype.element_ty), mask=live)
        tl.store(dve + out + HD // 2 + half, (l1 * g2).to(dve.dtype.element_ty), mask=live)
        g1, g2 = l0 * g1, l0 * g2
    _store_grad(g1, g2, dqkv, g8, gs, g8t, gts, t, half, live, (2 * H + j) * HD, pid, T, 3 * H * HD, HD, FP8, BLOCK)



dev = "cuda"
torch.manual_seed(0)
T, H, hd, V = 65536, 6, 128, 33
D, W = H * hd, 3 * H * hd
bf, e4 = torch.bfloat16, torch.float8_e4m3fn
qkv = torch.randn(T, W, device=dev, dtype=bf)
table = torch.randn(V, D, device=dev, dtype=bf)
tok = torch.randint(0, V, (T,), device=dev)
lam = torch.tensor([0.7, -0.4], device=dev)
ang = torch.rand(T, hd // 2, device=dev) * 6
cos, sin = ang.cos(), ang.sin()
dq, dk, dv = (torch.randn(T, H, hd, device=dev, dtype=bf) for _ in range(3))
EPS = torch.finfo(torch.float32).eps
for mode in (0, 1, 2, 3, 4, 5):
    for BLOCK, warps in ((64, 4), (128, 4), (128, 8), (128, 16)):
        if mode in (2, 3, 5) and BLOCK != 128:
            continue
        programs = T // BLOCK
        dqkv = torch.empty_like(qkv)
        g8, g8t = torch.empty(T, W, device=dev, dtype=e4), torch.empty(W, T, device=dev, dtype=e4)
        gs, gts = torch.empty(W // hd, T, device=dev), torch.empty(programs, W, device=dev)
        dve = torch.empty(T, D, device=dev, dtype=bf)
        dlam = torch.zeros(programs * H, 2, device=dev)
        f = lambda: _qkv_prep_bwd[(H, programs)](qkv, tok, table, lam, cos, sin, dq, dk, dv, dqkv, g8, gs, g8t, gts,
                                                 dve, dlam, T, EPS, H, hd, True, mode, BLOCK, num_warps=warps)
        try:
            f()
            ms = do_bench(f, warmup=10, rep=100)
            out("KERNEL", mode=mode, block=BLOCK, warps=warps, ms=round(ms, 4), per_step_ms=round(ms * 192, 1))
        except Exception as e:
            out("KERNEL", mode=mode, block=BLOCK, warps=warps, error=repr(e)[:300])

# the 128 x 128 scales of w's transpose (D, W): as fp8_blocks gives them, (D/128, W/128) = (6, 18) contiguous,
# against the same values in a buffer whose rows are padded to a multiple of 4 (hypothesis: cuBLAS reads them
# with leading dimension 20)
g = torch.randn(T, W, device=dev)
gb = g.view(T, W // 128, 128)
gsc = gb.abs().amax(-1, keepdim=True) / 448
g8r = (gb / gsc).to(e4).view(T, W)
gs_t = gsc.view(T, W // 128).t().contiguous()  # (W/128, T)
w = torch.randn(W, D, device=dev) * torch.rand(W // 128, 1, D // 128, 1, device=dev).repeat_interleave(128, 1).repeat_interleave(128, 3).view(W, D) * 10
wt8, wts = tp.fp8_blocks(w.t())
emu = (g8r.float().view(T, W // 128, 128) * gsc).view(T, W) @ (wt8.float().view(D // 128, 128, W // 128, 128) * wts[:, None, :, None]).view(D, W).t()
rel = lambda a: round(float((a.float() - emu).norm() / emu.norm()), 5)
out("LAYOUT", variant="contiguous (6, 18)", rel_err=rel(tp.block_mm(g8r, gs_t.t(), wt8, wts, torch.float32)))
for ld in (20, 24, 32):
    pad = torch.zeros(wts.size(0), ld, device=dev)
    pad[:, :wts.size(1)] = wts
    view = torch.as_strided(pad, wts.shape, (wts.size(1), 1))
    try:
        out("LAYOUT", variant=f"rows padded to {ld}", rel_err=rel(tp.block_mm(g8r, gs_t.t(), wt8, view, torch.float32)))
    except Exception as e:
        out("LAYOUT", variant=f"rows padded to {ld}", error=repr(e)[:300])
tpad = torch.zeros(wts.size(1), 8, device=dev)  # transposed storage, columns padded to 8
tpad[:, :wts.size(0)] = wts.t()
try:
    view = torch.as_strided(tpad, wts.shape, (wts.size(1), 1))
    out("LAYOUT", variant="transposed, padded to 8", rel_err=rel(tp.block_mm(g8r, gs_t.t(), wt8, view, torch.float32)))
except Exception as e:
    out("LAYOUT", variant="transposed", error=repr(e)[:300])
t8 = torch.zeros(wts.size(1), wts.size(0), device=dev)
t8.copy_(wts.t())
view = torch.as_strided(t8, wts.shape, (wts.size(1), 1))
out("LAYOUT", variant="transposed, unpadded", rel_err=rel(tp.block_mm(g8r, gs_t.t(), wt8, view, torch.float32)))
# K a multiple of 512 (scales' rows a multiple of 4): the same product with K = 2048
g2, w2 = g8r[:, :2048].contiguous(), wt8[:, :2048].contiguous()
emu2 = (g2.float().view(T, 16, 128) * gsc[:, :16]).view(T, 2048) @ (w2.float().view(D // 128, 128, 16, 128) * wts[:, None, :16, None]).view(D, 2048).t()
r2 = tp.block_mm(g2, gs_t[:16].t(), w2, wts[:, :16].contiguous(), torch.float32)
out("LAYOUT", variant="K=2048 (16 blocks)", rel_err=round(float((r2 - emu2).norm() / emu2.norm()), 5))
