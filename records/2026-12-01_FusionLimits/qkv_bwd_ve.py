"""Experiment (issue 3): qkv_prep's backward kernel summing the value-embedding table's gradient itself (per program,
a one-hot product on the tensor cores over its tokens: (64 ids x tokens) @ (tokens x head dim)), instead of writing
dve (T, D) for sum_by_index's one-hot product by cuBLAS. Each program walks SUB blocks of 64 tokens of one head and
writes one (64, d) fp32 partial; the partials are summed in program order (torch.sum: deterministic).
python3 exp/qkv_bwd_ve.py [--small]"""
import json, os, sys
import torch
import triton
import triton.language as tl
sys.path.insert(0, os.getcwd())
import train_plm as tp

SMALL = "--small" in sys.argv
_norm_rope_grad = tp._norm_rope_grad


@triton.jit
def _bwd_ve(qkv, tok, ve, lam, cos, sin, dq, dk, dv, dqkv, dve_part, dlam, T, EPS: tl.constexpr, H: tl.constexpr,
            HD: tl.constexpr, BLOCK: tl.constexpr, SUB: tl.constexpr, VP: tl.constexpr):
    j, pid = tl.program_id(0), tl.program_id(1)
    half, col = tl.arange(0, HD // 2)[None, :], tl.arange(0, HD)[None, :]
    lam0, lam1 = tl.load(lam), tl.load(lam + 1)
    acc = tl.zeros((VP, HD), tl.float32)
    sx = tl.zeros((BLOCK, HD), tl.float32)
    se = tl.zeros((BLOCK, HD), tl.float32)
    for i in range(SUB):
        t = (pid * SUB + i) * BLOCK + tl.arange(0, BLOCK)[:, None]
        live = t < T
        c = tl.load(cos + t * (HD // 2) + half, mask=live)
        s = tl.load(sin + t * (HD // 2) + half, mask=live)
        row, drow, out = qkv + t * (3 * H * HD), dqkv + t * (3 * H * HD), t * (H * HD) + j * HD
        _norm_rope_grad(row + j * HD, dq + out, drow + j * HD, c, s, half, live, EPS, HD)
        _norm_rope_grad(row + (H + j) * HD, dk + out, drow + (H + j) * HD, c, s, half, live, EPS, HD)
        g = tl.load(dv + out + col, mask=live, other=0.0).to(tl.float32)
        x = tl.load(row + (2 * H + j) * HD + col, mask=live).to(tl.float32)
        ids = tl.load(tok + t, mask=live, other=-1)  # (BLOCK, 1)
        e = tl.load(ve + ids * (H * HD) + j * HD + col, mask=live).to(tl.float32)
        sx += g * x
        se += g * e
        onehot_t = tl.where(tl.arange(0, VP)[:, None] == tl.reshape(ids, (1, BLOCK)), 1.0, 0.0)  # (VP, BLOCK)
        acc += tl.dot(onehot_t.to(dv.dtype.element_ty), (lam1 * g).to(dv.dtype.element_ty))
        tl.store(drow + (2 * H + j) * HD + col, (lam0 * g).to(dqkv.dtype.element_ty), mask=live)
    tl.store(dlam + 2 * (pid * H + j), tl.sum(tl.sum(sx, 1), 0))
    tl.store(dlam + 2 * (pid * H + j) + 1, tl.sum(tl.sum(se, 1), 0))
    tl.store(dve_part + (pid * H + j) * VP * HD + tl.arange(0, VP)[:, None] * HD + col, acc)


def backward_ve(dq, dk, dv, qkv, tok, ve, lam, cos, sin, heads, block=64, sub=8, warps=8):
    T, hd = qkv.size(0), qkv.size(1) // (3 * heads)
    V = ve.size(0)
    VP = max(16, triton.next_power_of_2(V))
    programs = triton.cdiv(T, block * sub)
    dqkv = torch.empty_like(qkv)
    part = qkv.new_empty(programs * heads, VP, hd, dtype=torch.float32)
    dlam = lam.new_zeros(programs * heads, 2)
    _bwd_ve[(heads, programs)](qkv, tok, ve, lam, cos, sin, dq, dk, dv, dqkv, part, dlam, T,
                               torch.finfo(torch.float32).eps, heads, hd, block, sub, VP, num_warps=warps)
    dtable = part.view(programs, heads, VP, hd).sum(0).transpose(0, 1).reshape(VP, heads * hd)[:V]
    return dqkv, dtable.to(ve.dtype), dlam.sum(0)


def main():
    dev = "cpu" if SMALL else "cuda"
    torch.manual_seed(0)
    T, H, hd, V = (512, 2, 32, 33) if SMALL else (65536, 6, 128, 33)
    bf = torch.float32 if SMALL else torch.bfloat16  # (Triton's CPU interpreter mis-multiplies bf16 in tl.dot)
    qkv = torch.randn(T, 3 * H * hd, device=dev).to(bf)
    tok = torch.randint(4, 24, (T,), device=dev)
    table = torch.randn(V, H * hd, device=dev).to(bf)
    lam = torch.tensor([0.7, 0.4], device=dev)
    pos = torch.arange(T, device=dev) % 300
    inv = 1.0 / 10000 ** (torch.arange(0, hd, 2, device=dev).float() / hd)
    ang = pos[:, None].float() * inv[None]
    cos, sin = ang.cos(), ang.sin()
    dq, dk, dv = (torch.randn(T, H, hd, device=dev).to(bf) for _ in range(3))
    ops = getattr(torch.ops, tp.OPS)
    if SMALL:
        tp.QKV_PREP_TILES["backward"] = (64, 4)
    dqkv_m, dve_m, dlam_m = ops.qkv_prep_backward(dq, dk, dv, qkv, tok, table, lam, cos, sin, H)
    dtab_m = tp.sum_by_index(dve_m, tok, V)
    subs = (2, 4) if SMALL else (4, 8, 16, 32)
    for sub in subs:
        dqkv, dtab, dlam = backward_ve(dq, dk, dv, qkv, tok, table, lam, cos, sin, H, sub=sub, warps=4 if SMALL else 8)
        print("CHECK", json.dumps(dict(sub=sub, dqkv_equal=bool(torch.equal(dqkv, dqkv_m)),
                                       dtable_rel=float((dtab.float() - dtab_m.float()).norm() / dtab_m.float().norm()),
                                       dtable_max=float((dtab.float() - dtab_m.float()).abs().max()),
                                       dlam_rel=float((dlam - dlam_m).norm() / dlam_m.norm()))), flush=True)
    if SMALL:
        return
    from triton.testing import do_bench

    def main_path():
        d = ops.qkv_prep_backward(dq, dk, dv, qkv, tok, table, lam, cos, sin, H)
        return tp.sum_by_index(d[1], tok, V)
    Vs = {"main_kernel": lambda: ops.qkv_prep_backward(dq, dk, dv, qkv, tok, table, lam, cos, sin, H),
          "main_kernel+sum_by_index": main_path}
    for sub in subs:
        for warps in (4, 8):
            Vs[f"fused_sub{sub}_w{warps}"] = lambda sub=sub, warps=warps: backward_ve(dq, dk, dv, qkv, tok, table, lam, cos,
                                                                                    sin, H, sub=sub, warps=warps)
    for name, fn in Vs.items():
        try:
            fn()
            torch.cuda.synchronize()
            print("TIME", json.dumps(dict(variant=name, ms=round(do_bench(fn, warmup=25, rep=200, return_mode="median"), 4))), flush=True)
        except Exception as e:
            print("TIME_FAILED", json.dumps(dict(variant=name, error=repr(e)[:300])), flush=True)


if __name__ == "__main__":
    main()
