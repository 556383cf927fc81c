"""Experiment (not part of the project): where the reference step's time goes, and candidate speed-ups.
Sections: fp8 (matmul shapes, bf16 vs _scaled_mm), attn (FlexAttention block sizes / kernel options, and
QK-norm + rotary variants feeding it), step (whole reference step: CUDA-event median, profile by kernel)."""
import os, sys, time, json
import torch, numpy as np
sys.path.insert(0, os.getcwd())
import train_plm as tp
import torch.nn.functional as F
from torch.nn.attention.flex_attention import flex_attention, create_block_mask, BlockMask
from triton.testing import do_bench

dev = torch.device("cuda")
cfg = tp.parse_config(["--preset", "reference"], has_gpu=True)
bf = torch.bfloat16
def out(tag, **kw):
    print(tag, json.dumps(kw), flush=True)

sections = sys.argv[1].split(",")

if "fp8" in sections:
    M = 65536
    res = {}
    for (m, k, n) in [(M, 768, 2304), (M, 768, 768), (M, 768, 1536), (M, 1536, 768), (M, 2304, 768),
                      (2304, M, 768), (768, M, 768), (1536, M, 768), (768, M, 1536)]:
        a = torch.randn(m, k, device=dev, dtype=bf); b = torch.randn(n, k, device=dev, dtype=bf)
        t_bf = do_bench(lambda: a @ b.t())
        a8, b8 = a.to(torch.float8_e4m3fn), b.to(torch.float8_e4m3fn)
        one = torch.ones((), device=dev)
        t_8 = do_bench(lambda: torch._scaled_mm(a8, b8.t(), scale_a=one, scale_b=one, out_dtype=bf))
        t_8f = do_bench(lambda: torch._scaled_mm(a8, b8.t(), scale_a=one, scale_b=one, out_dtype=bf, use_fast_accum=True))
        sa = torch.ones(m, 1, device=dev); sb = torch.ones(1, n, device=dev)
        try:
            t_8r = do_bench(lambda: torch._scaled_mm(a8, b8.t(), scale_a=sa, scale_b=sb, out_dtype=bf, use_fast_accum=True))
        except Exception as e:
            t_8r = repr(e)[:80]
        cast = do_bench(lambda: (a * (448 / a.abs().amax())).to(torch.float8_e4m3fn))
        fl = 2 * m * k * n
        res[f"{m}x{k}x{n}"] = dict(bf16_ms=round(t_bf, 4), fp8_ms=round(t_8, 4), fp8_fast_ms=round(t_8f, 4),
                                  fp8_rowwise_fast_ms=t_8r if isinstance(t_8r, str) else round(t_8r, 4),
                                  bf16_TF=round(fl / t_bf / 1e9), fp8_fast_TF=round(fl / t_8f / 1e9),
                                  cast_a_eager_ms=round(cast, 4))
    out("FP8", **res)

if "attn" in sections:
    loader = tp.PackedLoader(tp.resolve_files(cfg.train_files, "train"), cfg, 0, 1, dev, 0)
    tokens, starts, g = loader.next()
    doc, pos = tp.document_ids(starts)
    T, H, d = tokens.numel(), 6, 128
    D = H * d
    edges = torch.cat([starts.nonzero()[:, 0], torch.tensor([T], device=dev)])
    sumsq = float((edges.diff().double() ** 2).sum())
    flops = 4 * sumsq * d * H * 3.5  # fwd + bwd (bwd = 2.5 x fwd)
    def mm(b, h, q, k):
        return doc[q] == doc[k]
    def doc_mask(BQ, BK):
        q, k = doc.view(-1, BQ), doc.view(-1, BK)
        lq, hq, lk, hk = q[:, 0], q[:, -1], k[:, 0], k[:, -1]
        any_doc = (lq[:, None] <= hk[None, :]) & (lk[None, :] <= hq[:, None])
        one = (lq == hq)[:, None] & (lk == hk)[None, :] & (lq[:, None] == lk[None, :])
        def ordered(dense):
            num = dense.sum(-1, dtype=torch.int32)
            idx = dense.to(torch.int8).argsort(dim=-1, descending=True, stable=True).to(torch.int32)
            return num[None, None].contiguous(), idx[None, None].contiguous()
        return BlockMask.from_kv_blocks(*ordered(any_doc & ~one), *ordered(one), BLOCK_SIZE=(BQ, BK), mask_mod=mm)
    masks = {128: tp.document_block_mask(doc, 0)}
    for bs in [(128, 64), (64, 64)]:
        masks[bs] = doc_mask(*bs)
    for key, m in masks.items():
        out("MASK", key=str(key), sparsity=round(float(m.sparsity()), 2))
    inv_freq = 1.0 / 10000 ** (torch.arange(0, d, 2, device=dev).float() / d)
    ang = (pos[:, None].float() * inv_freq[None])[:, None]
    cos, sin = ang.cos(), ang.sin()

    def rot_bf16(x, cos, sin):
        x1, x2 = x.chunk(2, dim=-1)
        c, s = cos.to(x.dtype), sin.to(x.dtype)
        return torch.cat([x1 * c - x2 * s, x1 * s + x2 * c], -1)

    def core(qkv, mask, variant="cur", kopts=None):
        q, k, v = qkv.view(T, 3 * H, d).chunk(3, 1)
        if variant == "cur":
            q, k = tp.rotary(tp.norm(q), cos, sin).type_as(v), tp.rotary(tp.norm(k), cos, sin).type_as(v)
        elif variant == "bf16":
            q, k = rot_bf16(tp.norm(q), cos, sin), rot_bf16(tp.norm(k), cos, sin)
        elif variant == "joint":
            qk = tp.rotary(tp.norm(qkv.view(T, 3 * H, d)[:, :2 * H]), cos, sin).type_as(v)
            q, k = qk.chunk(2, 1)
        elif variant == "none":
            pass
        q, k, v = (t.transpose(0, 1)[None] for t in (q, k, v))
        y = flex_attention(q, k, v, block_mask=mask, kernel_options=kopts)
        return y[0].transpose(0, 1).reshape(T, D)

    qkv = torch.randn(T, 3 * D, device=dev, dtype=bf, requires_grad=True)
    go = torch.randn(T, D, device=dev, dtype=bf)
    variants = [
        ("b128_cur", 128, "cur", None),
        ("b128_none", 128, "none", None),
        ("b128_bf16", 128, "bf16", None),
        ("b128_joint", 128, "joint", None),
        ("b128_safe", 128, "none", {"ROWS_GUARANTEED_SAFE": True}),
        ("b128_tma", 128, "none", {"USE_TMA": True}),
        ("b128x64_none", (128, 64), "none", {"bwd_BLOCK_M1": 64, "bwd_BLOCK_N1": 64, "bwd_BLOCK_M2": 128, "bwd_BLOCK_N2": 64}),
        ("b64_none", (64, 64), "none", {"BLOCK_M": 64, "BLOCK_N": 64, "bwd_BLOCK_M1": 64, "bwd_BLOCK_N1": 64, "bwd_BLOCK_M2": 64, "bwd_BLOCK_N2": 64}),
        ("b64_w4", (64, 64), "none", {"BLOCK_M": 64, "BLOCK_N": 64, "num_warps": 4, "bwd_BLOCK_M1": 64, "bwd_BLOCK_N1": 64, "bwd_BLOCK_M2": 64, "bwd_BLOCK_N2": 64}),
    ]
    ref = None
    for name, mkey, variant, kopts in variants:
        try:
            t0 = time.time()
            f = torch.compile(lambda x, m, v=variant, o=kopts: core(x, m, v, o), dynamic=False)
            y = f(qkv, masks[mkey]); y.backward(go)
            comp = time.time() - t0
            if variant == "none":
                if ref is None:
                    ref = y.detach().float()
                err = float((y.detach().float() - ref).abs().max())
            else:
                err = None
            def fb():
                f(qkv, masks[mkey]).backward(go)
            ms = do_bench(fb, warmup=50, rep=300)
            fwd = do_bench(lambda: f(qkv, masks[mkey]), warmup=25, rep=200)
            out("ATTN", name=name, fwdbwd_ms=round(ms, 4), fwd_ms=round(fwd, 4), useful_TF=round(flops / ms / 1e9, 1),
                compile_s=round(comp, 1), max_abs_diff_vs_b128_none=err)
        except Exception as e:
            out("ATTN", name=name, error=repr(e)[:400])
        torch._dynamo.reset()

if "step" in sections:
    loader = tp.PackedLoader(tp.resolve_files(cfg.train_files, "train"), cfg, 0, 1, dev, 0)
    torch.manual_seed(0)
    model = tp.ProteinLM(cfg).to(dev)
    opts, _ = tp.make_optimizers(model, cfg, True)
    t0 = time.time()
    cm = torch.compile(model, dynamic=False)
    gen = torch.Generator(dev)
    micro = cfg.tokens_per_step // cfg.tokens_per_micro_batch
    def step():
        for _ in range(micro):
            tokens, starts, g = loader.next()
            gen.manual_seed(g)
            inp, lab = tp.mask_tokens(tokens, cfg.mask_rate, gen, cfg.mlm_80_10_10)
            with torch.autocast("cuda", torch.bfloat16):
                loss = cm(inp, starts, lab)
            (loss / micro).backward()
        for o in opts:
            o.step()
        model.zero_grad(set_to_none=True)
    step(); torch.cuda.synchronize(); out("STEP_COMPILE", first_step_s=round(time.time() - t0, 1))
    step(); step()
    ev = [torch.cuda.Event(enable_timing=True) for _ in range(9)]
    ev[0].record()
    for i in range(8):
        step(); ev[i + 1].record()
    torch.cuda.synchronize()
    dts = [a.elapsed_time(b) for a, b in zip(ev[:-1], ev[1:])]
    out("STEP", median_ms=round(float(np.median(dts)), 1), all=[round(x, 1) for x in dts])
    # optimizer alone
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    e0.record()
    for _ in range(5):
        for o in opts:
            o.step()
    e1.record(); torch.cuda.synchronize()
    out("OPT", ms_per_step=round(e0.elapsed_time(e1) / 5, 2))
    model.zero_grad(set_to_none=True)
    from torch.profiler import profile, ProfilerActivity
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        step(); step()
        torch.cuda.synchronize()
    cats = {}
    rows = []
    for e in prof.key_averages():
        t = e.device_time_total / 2 / 1e3  # ms per step
        if t <= 0:
            continue
        n = e.key
        low = n.lower()
        c = ("matmul" if any(s in low for s in ("gemm", "xmma", "cutlass", "nvjet", "sm90", "mm_")) and "triton" not in low
             else "flex_bwd" if "flex" in low and "backward" in low
             else "flex_fwd" if "flex" in low
             else "triton_other" if "triton" in low else "other")
        cats[c] = cats.get(c, 0) + t
        rows.append((t, e.count // 2, n[:160]))
    out("CATEGORIES_ms_per_step", **{k: round(v, 1) for k, v in sorted(cats.items(), key=lambda x: -x[1])})
    rows.sort(reverse=True)
    for t, cnt, n in rows[:70]:
        print(f"KERNEL {t:8.2f} ms {cnt:6d}x  {n}")
    prof.export_chrome_trace("/tmp/L/trace.json")
