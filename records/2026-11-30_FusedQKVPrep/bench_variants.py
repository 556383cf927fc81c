"""Experiment (issue 3): a 4-block slice of the reference model (24 -> 4 blocks, 2 value-embedding tables; the
reference widths), one real packed micro-batch of 65,536 tokens with its training mask, compiled the way the
trainer compiles (dynamic=False, inductor deterministic), forward + backward of the loss: ms per call per variant.

  base      the trainer at db430a2, as it ran in calls 18-19 (128-token mask blocks, FlexAttention's default tiles)
  m64a      64-token mask blocks (sequences packed by block_order(64)); tiles fwd 64x64, bwd 64/64/64/64
  m64b      64-token mask blocks; tiles fwd 64x64, bwd 32/64/64/32
  fp8in     qkv and MLP-in products in FP8 (e4m3, row-wise scales), forward and input gradient; weight grad bf16
  fp8all    all four block products that way
  last      the compiled forward returns only the last hidden state (not all 5: each extra output of the
            compiled graph gets a zero-filled gradient in its backward)
  last_half last + QK-norm's sum of squares as two 64-element sums (rotary's halves), scale after RoPE
  last_fp8  last + fp8all
  last_sep  last + q, k and v as three products (contiguous q and k: QK-norm reads them row by row)
  trainer   train_plm.py as it was in that call, unpatched (call 21: the first fused kernels, 32 tokens x all
            heads per program; call 22: this folder's, 64 tokens x one head); trainerN: N tokens per program

python3 exp/bench_variants.py OUT_DIR [variants...]  (the profile and output code of `base` go to OUT_DIR)
"""
import functools, json, os, sys, time
import torch
import torch.nn.functional as F
sys.path.insert(0, os.getcwd())
import train_plm as tp
from torch.nn.attention.flex_attention import flex_attention
from triton.testing import do_bench

out_dir = sys.argv[1]
which = sys.argv[2:] or ["base", "m64a", "m64b", "fp8in", "fp8all"]
torch._inductor.config.deterministic = True
dev = torch.device("cuda")
E4M3 = torch.float8_e4m3fn


def rowwise(t):
    """t (M, K) -> (t8 (M, K) e4m3 row-major, scale (M, 1) float32) with t ~ t8 * scale (row amax -> 448)."""
    scale = t.abs().amax(-1, keepdim=True).float().clamp_min(1e-12) / 448.0
    return (t.float() / scale).to(E4M3).contiguous(), scale


class FP8Linear(torch.autograd.Function):
    """x (M, K) bf16 @ w (N, K).T bf16 -> (M, N) bf16. Forward and dx in FP8 with row-wise scales (torch._scaled_mm);
    dw in bf16 (its reduction runs over the tokens, along which row-wise scales cannot lie)."""

    @staticmethod
    def forward(ctx, x, w):
        x8, xs = rowwise(x)
        w8, ws = rowwise(w)
        ctx.save_for_backward(x, w)
        return torch._scaled_mm(x8, w8.t(), scale_a=xs, scale_b=ws.t(), out_dtype=torch.bfloat16, use_fast_accum=True)

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        g8, gs = rowwise(g)
        wt8, wts = rowwise(w.t())  # (K, N): one scale per input channel
        dx = torch._scaled_mm(g8, wt8.t(), scale_a=gs, scale_b=wts.t(), out_dtype=torch.bfloat16, use_fast_accum=True)
        return dx, g.t() @ x


def lin8(x, w):
    return FP8Linear.apply(x.bfloat16(), w.bfloat16())


def lin16(x, w):
    return F.linear(x, w)


def qk_half(x, cos, sin):
    """rotary(norm(x)) with the sum of squares over the two rotary halves separately (64-element reductions)."""
    x1, x2 = x.float().unflatten(-1, (2, x.size(-1) // 2)).unbind(-2)
    r = torch.rsqrt((x1.square().sum(-1, keepdim=True) + x2.square().sum(-1, keepdim=True)) / x.size(-1)
                    + torch.finfo(torch.float32).eps)
    return torch.cat([(x1 * cos - x2 * sin) * r, (x1 * sin + x2 * cos) * r], -1)


def make_forwards(qkv_lin, out_lin, fc_lin, proj_lin, attend, half=False, sep=False):
    def attn_forward(self, x, ve, cos, sin, mask):
        T, D = x.shape
        if sep:
            q, k, v = (qkv_lin(x, w).view(T, self.heads, D // self.heads) for w in self.qkv_w.unbind(0))
        else:
            q, k, v = qkv_lin(x, self.qkv_w.flatten(0, 1)).view(T, 3 * self.heads, D // self.heads).chunk(3, 1)
        if ve is not None:
            v = (self.ve_lambdas[0] * v + self.ve_lambdas[1] * ve.view_as(v)).type_as(v)
        if half:
            q, k = qk_half(q, cos, sin).type_as(v), qk_half(k, cos, sin).type_as(v)
        else:
            q, k = tp.rotary(tp.norm(q), cos, sin).type_as(v), tp.rotary(tp.norm(k), cos, sin).type_as(v)
        q, k, v = (t.transpose(0, 1)[None] for t in (q, k, v))
        y = attend(q, k, v, block_mask=mask)
        return out_lin(y[0].transpose(0, 1).reshape(T, D), self.out.weight)

    def mlp_forward(self, x):
        return proj_lin(F.relu(fc_lin(x, self.fc.weight)).square(), self.proj.weight)
    return attn_forward, mlp_forward


OPTS = {
    "m64a": dict(fwd_BLOCK_M=64, fwd_BLOCK_N=64, fwd_num_stages=3, fwd_num_warps=4,
                 bwd_BLOCK_M1=64, bwd_BLOCK_N1=64, bwd_BLOCK_M2=64, bwd_BLOCK_N2=64, bwd_num_stages=3, bwd_num_warps=4),
    "m64b": dict(fwd_BLOCK_M=64, fwd_BLOCK_N=64, fwd_num_stages=3, fwd_num_warps=4,
                 bwd_BLOCK_M1=32, bwd_BLOCK_N1=64, bwd_BLOCK_M2=64, bwd_BLOCK_N2=32, bwd_num_stages=3, bwd_num_warps=4),
}

cfg = tp.parse_config(["--preset", "reference", "--num_layers", "4", "--num_value_embeds", "2"], has_gpu=True)


def micro_batch(block):
    tp.FLEX_BLOCK = block
    tp.block_order.__defaults__ = (block,)
    loader = tp.PackedLoader(tp.resolve_files(cfg.train_files, "train"), cfg, 0, 1, dev, 0)
    for _ in range(3):
        tokens, starts, g = loader.next()
    gen = torch.Generator(dev)
    gen.manual_seed(g)
    inputs, labels = tp.mask_tokens(tokens, cfg.mask_rate, gen, True)
    return inputs, starts, labels


orig_attn, orig_mlp, orig_forward = tp.Attention.forward, tp.MLP.forward, tp.ProteinLM.forward


def last_hidden(self, tokens, starts):
    """hidden_states, returning only the last state (as a one-element list)."""
    mask, cos, sin = self.attention_inputs(starts)
    onehot = (tokens[:, None] == torch.arange(tp.V, device=tokens.device)).to(torch.bfloat16)
    x = x0 = tp.norm(onehot @ self.embed.weight.to(torch.bfloat16))
    tables = torch.cat([ve.weight for ve in self.value_embeds], 1).to(torch.bfloat16)
    ves = (onehot @ tables).chunk(len(self.value_embeds), 1)
    L, skips = len(self.blocks), []
    for i, block in enumerate(self.blocks):
        if i >= L - L // 2:
            x = x + self.skip_weights[L - 1 - i] * skips.pop()
        j = self.ve_of_block[i]
        x = block(x, x0, None if j is None else ves[j], cos, sin, mask)
        if i < L // 2:
            skips.append(x)
    return [x]


def last_forward(self, tokens, starts, labels=None, weights=None):
    """ProteinLM.forward (MLM loss) on last_hidden."""
    x = last_hidden(self, tokens, starts)[-1]
    logits = self.decoder(F.gelu(self.head_dense(tp.norm(x)))).float()
    c = self.cfg.logit_softcap
    logits = c * torch.tanh(logits / c)
    loss = F.cross_entropy(logits, labels, ignore_index=-100, reduction="sum")
    return loss / (labels != -100).sum().clamp_min(1)
results = {}
for name in which:
    print("START", name, flush=True)
    block = 64 if name.startswith("m64") else 128
    inputs, starts, labels = micro_batch(block)
    attend = functools.partial(flex_attention, kernel_options=OPTS[name]) if name in OPTS else flex_attention
    if name.startswith("trainer"):
        tp.Attention.forward, tp.MLP.forward, tp.ProteinLM.forward = orig_attn, orig_mlp, orig_forward
        tp.QKV_PREP_BLOCK = int(name[7:] or 64)
    else:
      lins = dict(fp8in=(lin8, lin16, lin8, lin16), fp8all=(lin8,) * 4, last_fp8=(lin8,) * 4).get(name, (lin16,) * 4)
      tp.Attention.forward, tp.MLP.forward = make_forwards(*lins, attend, half=name == "last_half", sep=name == "last_sep")
      tp.ProteinLM.forward = last_forward if name.startswith("last") else orig_forward
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
        if name == "base":
            torch._logging.set_logs(output_code=True)  # to stderr: where the copies come from
        t0 = time.time()
        loss = fb()
        torch.cuda.synchronize()
        compile_s = time.time() - t0
        torch._logging.set_logs()
        params = list(model.parameters())
        ms = do_bench(fb, warmup=20, rep=400, grad_to_none=params)
        model.zero_grad(set_to_none=True)
        fb()
        gnorm = float(torch.stack([p.grad.float().norm() for p in params if p.grad is not None]).norm())
        r = dict(ms=round(ms, 3), compile_s=round(compile_s, 1), loss=round(float(loss), 5), grad_norm=round(gnorm, 4))
    except Exception as e:
        r = dict(error=repr(e)[:400])
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
tp.Attention.forward, tp.MLP.forward, tp.ProteinLM.forward = orig_attn, orig_mlp, orig_forward
json.dump(results, open(os.path.join(out_dir, "variants.json"), "w"), indent=1)
