"""Experiment (issue 3): exp/doc_attn.py's kernels against main's qkv_prep + FlexAttention on one real reference
micro-batch (65,536 packed tokens, 6 heads x 128): errors against a float32 reference, bits across two runs,
forward + backward times (do_bench), and a small tile sweep. python3 exp/bench_doc_attn.py"""
import json, math, os, sys, time
import torch
sys.path.insert(0, os.getcwd()); sys.path.insert(0, os.path.join(os.getcwd(), "exp"))
import train_plm as tp
import doc_attn as da
from torch.nn.attention.flex_attention import flex_attention
from triton.testing import do_bench


def out(tag, **kw):
    print(tag, json.dumps(kw), flush=True)


dev = torch.device("cuda")
bf = torch.bfloat16
torch._inductor.config.inductor_choices_class = tp.KernelChoices
cfg = tp.parse_config(["--preset", "reference"], has_gpu=True)
loader = tp.PackedLoader(tp.resolve_files(cfg.train_files, "train"), cfg, 0, 1, dev, 0)
for _ in range(3):
    tokens, starts, g = loader.next()
T, H, D = tokens.numel(), 6, 128
doc, lo, hi = da.doc_ranges(starts)
_, pos = tp.document_ids(starts)
edges = torch.cat([starts.nonzero()[:, 0], torch.tensor([T], device=dev)])
lengths = edges.diff()
sumsq = float((lengths.double() ** 2).sum())
flops = 4 * sumsq * D * H * 3.5
tiles = float(((hi - lo).double() * 64).sum()) * H  # computed (q, k) entries per head summed (64-token blocks)
out("BATCH", T=T, sequences=lengths.numel(), max_len=int(lengths.max()), useful_GFLOP=round(flops / 1e9, 1),
    useful_entry_fraction=round(sumsq * H / tiles, 3))
inv = 1.0 / 10000 ** (torch.arange(0, D, 2, device=dev).float() / D)
ang = (pos[:, None].float() * inv[None])[:, None]
cos, sin = ang.cos(), ang.sin()
c2, s2 = cos.squeeze(1).contiguous(), sin.squeeze(1).contiguous()
torch.manual_seed(0)
qkv0 = torch.randn(T, 3 * H * D, device=dev, dtype=bf)
ves0 = torch.randn(T, 12 * H * D, device=dev, dtype=bf)  # value embeddings: one chunk of all 12 tables' product
lam0 = torch.tensor([0.7, 0.4], device=dev)
go = torch.randn(T, H * D, device=dev, dtype=bf)
EPS = torch.finfo(torch.float32).eps


class DocAttn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, qkv, ve, lam, fused):
        q, k, v = (qkv.new_empty(T, H, D) for _ in range(3))
        tp._qkv_prep_fwd[(H, T // 64)](qkv, ve, ve.stride(0), lam, c2, s2, q, k, v, T, EPS, H, D, True, 64, num_warps=4)
        o, lse = da.attn_forward(q, k, v, doc, lo, hi)
        ctx.save_for_backward(qkv, ve, lam, q, k, v, o, lse)
        ctx.fused = fused
        return o.view(T, H * D)

    @staticmethod
    def backward(ctx, g):
        qkv, ve, lam, q, k, v, o, lse = ctx.saved_tensors
        if ctx.fused:
            dqkv, dve, dlam = da.attn_backward(g.view(T, H, D), q, k, v, o, lse, doc, lo, hi, prep=(qkv, ve, lam, c2, s2))
        else:
            dq, dk, dv = da.attn_backward(g.view(T, H, D), q, k, v, o, lse, doc, lo, hi)
            dqkv, dve, dlam = getattr(torch.ops, tp.QKV_OPS).qkv_prep_backward(dq, dk, dv, qkv, ve, lam, c2, s2, H)
        return dqkv, dve, dlam, None


mask = tp.document_block_mask(doc, 0)


def main_path(qkv, ve, lam):
    q, k, v = tp.qkv_prep(qkv, ve, lam, cos, sin, H)
    q, k, v = (t.transpose(0, 1)[None] for t in (q, k, v))
    return flex_attention(q, k, v, block_mask=mask)[0].transpose(0, 1).reshape(T, H * D)


main_c = torch.compile(main_path, dynamic=False, options=tp.INDUCTOR_OPTIONS)


def ref_path(qkv, ve, lam):  # float32 throughout
    q, k, v = tp.qkv_prep_reference(qkv, ve, lam, cos, sin, H)
    q, k, v = (t.transpose(0, 1)[None] for t in (q, k, v))
    return flex_attention(q, k, v, block_mask=mask)[0].transpose(0, 1).reshape(T, H * D)


ref_c = torch.compile(ref_path, dynamic=False, options=tp.INDUCTOR_OPTIONS)


def run(f, dtype=bf):
    qkv = qkv0.to(dtype).clone().requires_grad_()  # clone: .to(bf16) of a bf16 tensor is the tensor itself
    ves = ves0.to(dtype).clone().requires_grad_()
    lam = lam0.clone().requires_grad_()
    ve = ves[:, 3 * H * D:4 * H * D]  # a strided chunk, as in training
    y = f(qkv, ve, lam)
    y.backward(go.to(dtype))
    torch.cuda.synchronize()
    return [y.detach(), qkv.grad, ves.grad[:, 3 * H * D:4 * H * D], lam.grad], (qkv, ves, lam, f)


def rel(a, b):
    return float((a.float() - b.float()).norm() / b.float().norm())


da.CFG.update(fwd=(64, 64, 4, 3), dkdv=(64, 64, 4, 2), dq=(64, 64, 4, 2))  # call 58's sweep
paths = {"main": main_c, "fused": lambda a, b, c: DocAttn.apply(a, b, c, True),
         "unfused": lambda a, b, c: DocAttn.apply(a, b, c, False)}
t0 = time.time()
ref, _ = run(ref_c, torch.float32)
out("REF", s=round(time.time() - t0, 1))
results = {}
for name, f in paths.items():
    try:
        t0 = time.time()
        r1, args = run(f)
        first = time.time() - t0
        r2, _ = run(f)
        same = all(torch.equal(a, b) for a, b in zip(r1, r2))
        errs = {k: round(rel(a, b), 5) for k, a, b in zip(("out", "dqkv", "dve", "dlam"), r1, ref)}
        errs["dq"] = round(rel(r1[1][:, :H * D], ref[1][:, :H * D]), 5)
        errs["dk"] = round(rel(r1[1][:, H * D:2 * H * D], ref[1][:, H * D:2 * H * D]), 5)
        qkv, ves, lam, _ = args

        def fb():
            f(qkv, ves[:, 3 * H * D:4 * H * D], lam).backward(go)
        ms = do_bench(fb, warmup=25, rep=400, grad_to_none=[qkv, ves, lam])
        with torch.no_grad():
            fwd = do_bench(lambda: f(qkv, ves[:, 3 * H * D:4 * H * D], lam), warmup=25, rep=200)
        results[name] = ms
        from torch.profiler import profile, ProfilerActivity
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(5):
                fb()
            torch.cuda.synchronize()
        kern = {}
        for e in prof.events():
            if e.device_type == torch.autograd.DeviceType.CUDA:
                kern[e.name] = kern.get(e.name, 0) + e.device_time / 5 / 1000
        top = sorted(kern.items(), key=lambda x: -x[1])[:12]
        out("KERNELS", name=name, total_ms=round(sum(kern.values()), 4), top=[(n[:70], round(t, 4)) for n, t in top])
        out("PATH", name=name, fwdbwd_ms=round(ms, 4), fwd_ms=round(fwd, 4), per_step_ms=round(ms * 192, 1),
            first_s=round(first, 1), same_bits_twice=same, rel_err_vs_fp32=errs)
    except Exception as e:
        import traceback; traceback.print_exc()
        out("PATH", name=name, error=repr(e)[:600])
if "main" in results and "fused" in results:
    out("SAVING", per_step_ms=round((results["main"] - results["fused"]) * 192, 1))

# tile sweep of each kernel alone (fused backward)
q, k, v = (torch.randn(T, H, D, device=dev, dtype=bf) for _ in range(3))
q, k = (t / t.float().pow(2).mean(-1, keepdim=True).sqrt().to(bf) for t in (q, k))  # QK-normed rows
o, lse = da.attn_forward(q, k, v, doc, lo, hi)
gob = go.view(T, H, D)
qkv, ve = qkv0, ves0[:, :H * D]
delta = torch.empty(H, T, device=dev)
da._attn_delta[(H, T // 64)](o, gob, delta, T, H, D, 64, num_warps=4)
qk_scale, sm_scale = D ** -0.5 * math.log2(math.e), D ** -0.5
dqkv = torch.empty_like(qkv)
dve = torch.empty(T, H * D, device=dev, dtype=bf)
sweeps = {
    "fwd": [(64, 64, 4, 3), (64, 64, 4, 4), (32, 64, 4, 3), (64, 32, 4, 4), (64, 64, 4, 1), (32, 32, 4, 3),
            (64, 64, 2, 3), (32, 64, 2, 3)],
    "dkdv": [(64, 64, 4, 2), (64, 64, 4, 1), (32, 64, 4, 2), (32, 64, 4, 1), (16, 64, 4, 2), (64, 32, 4, 2),
             (32, 32, 4, 2), (64, 128, 8, 1), (32, 128, 8, 2), (64, 64, 8, 2), (32, 64, 2, 2), (16, 32, 2, 2)],
    "dq": [(64, 64, 4, 2), (64, 64, 4, 1), (64, 32, 4, 2), (64, 32, 4, 1), (128, 64, 8, 2), (128, 32, 8, 2),
           (32, 64, 4, 2), (32, 32, 4, 2), (64, 16, 4, 2), (128, 64, 8, 1), (32, 64, 2, 2)],
}
for kern, cfgs in sweeps.items():
    for BM, BN, w, st in cfgs:
        try:
            if kern == "fwd":
                o2 = torch.empty_like(q); l2 = torch.empty_like(lse)
                fn = lambda: da._attn_fwd[(H, T // BM)](q, k, v, o2, l2, doc, lo, hi, T, qk_scale, H, D, BM, BN, 64,
                                                        num_warps=w, num_stages=st)
            elif kern == "dkdv":
                dl = torch.zeros(T // BN * H, 2, device=dev)
                fn = lambda: da._attn_bwd_dkdv[(H, T // BN)](q, k, v, gob, lse, delta, doc, lo, hi, q, q, qkv, ve,
                                                             ve.stride(0), lam0, c2, s2, dqkv, dve, dl, T, qk_scale,
                                                             sm_scale, EPS, H, D, BM, BN, 64, True, True,
                                                             num_warps=w, num_stages=st)
            else:
                fn = lambda: da._attn_bwd_dq[(H, T // BM)](q, k, v, gob, lse, delta, doc, lo, hi, q, qkv, c2, s2, dqkv,
                                                           T, qk_scale, sm_scale, EPS, H, D, BM, BN, 64, True,
                                                           num_warps=w, num_stages=st)
            fn()
            ms = do_bench(fn, warmup=10, rep=100)
            out("TILE", kernel=kern, cfg=[BM, BN, w, st], ms=round(ms, 4), per_step_ms=round(ms * 192, 1))
        except Exception as e:
            out("TILE", kernel=kern, cfg=[BM, BN, w, st], error=repr(e)[:300])
ms = do_bench(lambda: da._attn_delta[(H, T // 64)](o, gob, delta, T, H, D, 64, num_warps=4), warmup=10, rep=100)
out("TILE", kernel="delta", ms=round(ms, 4), per_step_ms=round(ms * 192, 1))
ms = do_bench(lambda: tp._qkv_prep_fwd[(H, T // 64)](qkv, ve, ve.stride(0), lam0, c2, s2, q, k, v, T, EPS, H, D, True,
                                                    64, num_warps=4), warmup=10, rep=100)
out("TILE", kernel="prep_fwd", ms=round(ms, 4), per_step_ms=round(ms * 192, 1))
