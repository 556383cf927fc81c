"""Experiment (issue 3), for the next session: FlexAttention mask blocks below 64 tokens, and different query
and key block sizes, on a 4-block slice of the reference model (one real micro-batch, packed by block_order at
the smaller block size, compiled as the trainer compiles; bf16, FP8 off): ms per forward + backward.
Tiles come from a choices class (torch._inductor.config.inductor_choices_class), as in train_plm.KernelChoices.

  variant      (Q block, KV block)  forward (BLOCK_M, BLOCK_N, stages, warps)  backward (M1, N1, M2, N2, stages, warps)
  m64          64, 64               64, 64, 3, 4                                32, 64, 64, 32, 3, 4   (main)
  q64k32       64, 32               64, 32, 3, 4                                32, 32, 64, 32, 3, 4
  q64k32_16    64, 32               64, 32, 3, 4                                16, 32, 64, 16, 3, 4
  m32          32, 32               32, 32, 3, 4                                16, 32, 32, 16, 3, 4
  m32_w2       32, 32               32, 32, 3, 2                                16, 32, 32, 16, 3, 2

Useful share of the computed tile entries on the reference stream (records/2026-11-30_Flex64/tile_use.out):
64: 86.0%, 32: 92.9%. python3 exp/bench_m32.py OUT_DIR [variants...]
"""
import json, os, sys, time
import torch
sys.path.insert(0, os.getcwd())
import train_plm as tp
from torch.nn.attention.flex_attention import BlockMask
from torch._inductor.template_heuristics.triton import FlexBwDConfig, FlexConfig
from triton.testing import do_bench

out_dir = sys.argv[1]
VARIANTS = {
    "m64": ((64, 64), (64, 64, 3, 4), (32, 64, 64, 32, 3, 4)),
    "q64k32": ((64, 32), (64, 32, 3, 4), (32, 32, 64, 32, 3, 4)),
    "q64k32_16": ((64, 32), (64, 32, 3, 4), (16, 32, 64, 16, 3, 4)),
    "m32": ((32, 32), (32, 32, 3, 4), (16, 32, 32, 16, 3, 4)),
    "m32_w2": ((32, 32), (32, 32, 3, 2), (16, 32, 32, 16, 3, 2)),
    # session 11: 128-token query blocks (13% more computed entries than 64/64) for larger forward / dQ tiles
    "q128k64_f": ((128, 64), (128, 64, 3, 8), (32, 64, 64, 32, 3, 4)),
    "q128k64_a": ((128, 64), (128, 64, 3, 8), (64, 64, 128, 64, 3, 8)),
    "q128k64_b": ((128, 64), (128, 64, 3, 8), (32, 64, 128, 64, 3, 8)),
    "m64_bw8": ((64, 64), (64, 64, 3, 4), (64, 64, 64, 64, 3, 8)),
    "q64k128": ((64, 128), (64, 128, 3, 8), (64, 128, 64, 64, 3, 8)),
}
which = sys.argv[2:] or list(VARIANTS)
torch._inductor.config.deterministic = True
dev = torch.device("cuda")
current = {}


class Choices(tp.KernelChoices):
    def get_flex_attention_fwd_configs(self, head_dim, dtype, device_type="cuda"):
        return [FlexConfig(*current["fwd"])]

    def get_flex_attention_bwd_configs(self, head_dim, dtype, device_type="cuda"):
        return [FlexBwDConfig(*current["bwd"])]

    def uuid(self):
        return f"bench_m32 {current}"


torch._inductor.config.inductor_choices_class = Choices


def block_mask(doc, QB, KB):
    """train_plm.document_block_mask with separate query and key block sizes (window 0)."""
    T = doc.numel()
    qb, kb = doc.view(T // QB, QB), doc.view(T // KB, KB)
    qlo, qhi, klo, khi = qb[:, 0], qb[:, -1], kb[:, 0], kb[:, -1]
    any_doc = (qlo[:, None] <= khi[None, :]) & (klo[None, :] <= qhi[:, None])
    one_doc = (qlo[:, None] == qhi[:, None]) & (klo[None, :] == khi[None, :]) & (qlo[:, None] == klo[None, :])

    def mask_mod(b, h, q, k):
        return doc[q] == doc[k]

    def ordered(dense):
        num = dense.sum(-1, dtype=torch.int32)
        idx = dense.to(torch.int8).argsort(dim=-1, descending=True, stable=True).to(torch.int32)
        return num[None, None].contiguous(), idx[None, None].contiguous()
    return BlockMask.from_kv_blocks(*ordered(any_doc & ~one_doc), *ordered(one_doc), BLOCK_SIZE=(QB, KB),
                                    mask_mod=mask_mod)


cfg = tp.parse_config(["--preset", "reference", "--num_layers", "4", "--num_value_embeds", "2", "--fp8", "false"],
                      has_gpu=True)
results = {}
for name in which:
    (QB, KB), fwd, bwd = VARIANTS[name]
    current.update(fwd=fwd, bwd=bwd)
    small = min(QB, KB)
    tp.FLEX_BLOCK = small
    tp.block_order.__defaults__ = (small,)
    tp.document_block_mask = lambda doc, window, QB=QB, KB=KB: block_mask(doc, QB, KB)
    loader = tp.PackedLoader(tp.resolve_files(cfg.train_files, "train"), cfg, 0, 1, dev, 0)
    for _ in range(3):
        tokens, starts, g = loader.next()
    gen = torch.Generator(dev)
    gen.manual_seed(g)
    inputs, labels = tp.mask_tokens(tokens, cfg.mask_rate, gen, True)
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = tp.ProteinLM(cfg).to(dev)
    with torch.no_grad():
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
        gnorm = float(torch.stack([p.grad.float().norm() for p in params if p.grad is not None]).norm())
        mask = model.attention_inputs(starts)[0]
        entries = int(mask.kv_num_blocks.sum() + mask.full_kv_num_blocks.sum()) * QB * KB
        r = dict(ms=round(ms, 3), compile_s=round(compile_s, 1), loss=round(float(loss), 5), grad_norm=round(gnorm, 4),
                 computed_entries_M=round(entries / 1e6, 2))
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
        with open(os.path.join(out_dir, f"m32_{name}_kernels.txt"), "w") as f:
            for t, c, k in rows:
                f.write(f"{t:8.3f} ms {c:5d}x  {k}\n")
json.dump(results, open(os.path.join(out_dir, "m32_variants.json"), "w"), indent=1)
