"""Experiment (issue 3): FP8 products on top of the trainer (fused qkv_prep kernels), on a 4-block slice of the
reference model and one real packed micro-batch, compiled as the trainer compiles: ms per forward + backward.

  trainer   train_plm.py unpatched
  f8fwd     qkv, MLP-in and MLP-out products: forward in FP8 (e4m3, row-wise scales); backward bf16
  f8fd      f8fwd + the MLP products' input gradients in FP8 (qkv's in bf16)
  f8fd3     f8fwd + all three products' input gradients in FP8
  f8all     all four block products (attention output too), forward and input gradient in FP8
  X_p2k     variant X with inductor's persistent-reduction limit for row reductions raised from 1,024 to 2,048
            elements (the MLP's 1,536-wide rows: one pass for the row-wise amax and the cast)
Weight gradients stay bf16 everywhere.

python3 exp/bench_fp8.py OUT_DIR [variants...]
"""
import json, os, sys, time
import torch
import torch.nn.functional as F
sys.path.insert(0, os.getcwd())
import train_plm as tp
from triton.testing import do_bench

out_dir = sys.argv[1]
which = sys.argv[2:] or ["trainer", "f8fwd", "f8fd", "f8fd3", "f8all", "f8fd_p2k", "f8fd3_p2k"]
torch._inductor.config.deterministic = True
dev = torch.device("cuda")
E4M3 = torch.float8_e4m3fn


def rowwise(t):
    """t (M, K) -> (t8 (M, K) e4m3, scale (M, 1) float32), t ~ t8 * scale (row amax -> 448)."""
    scale = t.abs().amax(-1, keepdim=True).float().clamp_min(1e-12) / 448.0
    return (t.float() / scale).to(E4M3).contiguous(), scale


class FP8Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, fp8_dgrad):
        x8, xs = rowwise(x)
        w8, ws = rowwise(w)
        ctx.save_for_backward(x, w)
        ctx.fp8_dgrad = fp8_dgrad
        return torch._scaled_mm(x8, w8.t(), scale_a=xs, scale_b=ws.t(), out_dtype=torch.bfloat16, use_fast_accum=True)

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        if ctx.fp8_dgrad:
            g8, gs = rowwise(g)
            wt8, wts = rowwise(w.t())
            dx = torch._scaled_mm(g8, wt8.t(), scale_a=gs, scale_b=wts.t(), out_dtype=torch.bfloat16,
                                  use_fast_accum=True)
        else:
            dx = g @ w
        return dx, g.t() @ x, None


def lin(mode):
    if mode == "bf16":
        return F.linear
    return lambda x, w: FP8Linear.apply(x, w.to(torch.bfloat16), mode == "fd")


MODES = {  # qkv, out, fc, proj
    "f8fwd": ("f", "bf16", "f", "f"),
    "f8fd": ("f", "bf16", "fd", "fd"),
    "f8fd3": ("fd", "bf16", "fd", "fd"),
    "f8all": ("fd", "fd", "fd", "fd"),
}


def make_forwards(qkv_lin, out_lin, fc_lin, proj_lin):
    def attn_forward(self, x, ve, cos, sin, mask):
        T, D = x.shape
        q, k, v = tp.qkv_prep(qkv_lin(x, self.qkv_w.flatten(0, 1)), ve, self.ve_lambdas, cos, sin, self.heads)
        q, k, v = (t.transpose(0, 1)[None] for t in (q, k, v))
        y = tp.flex_attention(q, k, v, block_mask=mask)
        return out_lin(y[0].transpose(0, 1).reshape(T, D), self.out.weight)

    def mlp_forward(self, x):
        return proj_lin(F.relu(fc_lin(x, self.fc.weight)).square(), self.proj.weight)
    return attn_forward, mlp_forward


cfg = tp.parse_config(["--preset", "reference", "--num_layers", "4", "--num_value_embeds", "2"], has_gpu=True)
loader = tp.PackedLoader(tp.resolve_files(cfg.train_files, "train"), cfg, 0, 1, dev, 0)
for _ in range(3):
    tokens, starts, g = loader.next()
gen = torch.Generator(dev)
gen.manual_seed(g)
inputs, labels = tp.mask_tokens(tokens, cfg.mask_rate, gen, True)
orig_attn, orig_mlp = tp.Attention.forward, tp.MLP.forward
from torch._inductor import choices as ind_choices
from torch._inductor.runtime.hints import ReductionHint
orig_persistent = ind_choices.InductorChoices.should_use_persistent_reduction


def persistent_2k(features, *args):
    n = features.reduction_numel
    if features.get_reduction_hint() == ReductionHint.INNER and getattr(n, "is_number", True) and int(n) <= 2048:
        return True
    return orig_persistent(features, *args)
results = {}
for name in which:
    print("START", name, flush=True)
    if name == "trainer":
        tp.Attention.forward, tp.MLP.forward = orig_attn, orig_mlp
    else:
        tp.Attention.forward, tp.MLP.forward = make_forwards(*(lin(m) for m in MODES[name.split("_")[0]]))
    ind_choices.InductorChoices.should_use_persistent_reduction = staticmethod(
        persistent_2k if name.endswith("_p2k") else orig_persistent)
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = tp.ProteinLM(cfg).to(dev)
    with torch.no_grad():  # non-zero output projections, so every path carries signal
        for b in model.blocks:
            tp.init_linear(b.attn.out.weight)
            tp.init_linear(b.mlp.proj.weight)
        tp.init_linear(model.decoder.weight)
    cm = torch.compile(model, dynamic=False)
    ac = torch.autocast("cuda", torch.bfloat16)

    def fb():
        with ac:
            loss = cm(inputs, starts, labels)
        loss.backward()
        return loss
    try:
        t0 = time.time()
        loss = fb()
        torch.cuda.synchronize()
        compile_s = time.time() - t0
        params = list(model.parameters())
        ms = do_bench(fb, warmup=20, rep=400, grad_to_none=params)
        model.zero_grad(set_to_none=True)
        fb()
        grads = {n: p.grad.float().clone() for n, p in model.named_parameters() if p.grad is not None}
        gnorm = float(torch.stack([g.norm() for g in grads.values()]).norm())
        if name == "trainer":
            ref = grads
        cos = {n: float(F.cosine_similarity(grads[n].flatten(), ref[n].flatten(), 0)) for n in grads
               if n in ref and ref[n].norm() > 0} if "ref" in globals() else {}
        r = dict(ms=round(ms, 3), compile_s=round(compile_s, 1), loss=round(float(loss), 5), grad_norm=round(gnorm, 4),
                 min_grad_cos=round(min(cos.values()), 5) if cos else None,
                 min_grad_cos_param=min(cos, key=cos.get) if cos else None)
    except Exception as e:
        r = dict(error=repr(e)[:600])
    results[name] = r
    print("VARIANT", name, json.dumps(r), flush=True)
    if "error" not in r:
        from torch.profiler import profile, ProfilerActivity
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(3):
                fb()
            torch.cuda.synchronize()
        rows = sorted(((e.device_time_total / 3e3, e.count // 3, e.key[:140]) for e in prof.key_averages()
                       if e.device_time_total > 0), reverse=True)
        with open(os.path.join(out_dir, f"{name}_kernels.txt"), "w") as f:
            for t, c, k in rows:
                f.write(f"{t:8.3f} ms {c:5d}x  {k}\n")
tp.Attention.forward, tp.MLP.forward = orig_attn, orig_mlp
json.dump(results, open(os.path.join(out_dir, "fp8_variants.json"), "w"), indent=1)
