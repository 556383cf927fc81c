"""Experiment (issue 3), for the next session: 64-token FlexAttention mask blocks on the trainer, made possible by
overriding inductor's flex backward configurations (torch._inductor.choices.InductorChoices, installed with
V.set_choices_handler): torch 2.11-2.13 filter their default sm90 backward configuration (64/128/128/64) against
the mask block size BEFORE applying kernel_options, so a 64-token mask finds no backward kernel. 4-block slice of
the reference model, one real micro-batch (packed by block_order(block)), compiled as the trainer compiles:
ms per forward + backward (the trainer's bf16 path; FP8 off).

  trainer     128-token mask blocks, inductor's defaults
  m64_s3w4    64-token blocks; fwd 64x64 s3 w4; bwd 64/64/64/64 s3 w4
  m64_s2w4    bwd 64/64/64/64 s2 w4
  m64_32      bwd 32/64/64/32 s3 w4
  m64_s3w8    bwd 64/64/64/64 s3 w8

python3 exp/bench_m64.py OUT_DIR [variants...]
"""
import json, os, sys, time
import torch
sys.path.insert(0, os.getcwd())
import train_plm as tp
from torch._inductor.choices import InductorChoices
from torch._inductor.virtualized import V
try:
    from torch._inductor.template_heuristics.triton import FlexBwDConfig, FlexConfig
except ImportError:  # older layout
    from torch._inductor.template_heuristics import FlexBwDConfig, FlexConfig
from triton.testing import do_bench

out_dir = sys.argv[1]
which = sys.argv[2:] or ["trainer", "m64_s3w4", "m64_s2w4", "m64_32", "m64_s3w8"]
torch._inductor.config.deterministic = True
dev = torch.device("cuda")
BWD = {"m64_s3w4": (64, 64, 64, 64, 3, 4), "m64_s2w4": (64, 64, 64, 64, 2, 4), "m64_32": (32, 64, 64, 32, 3, 4),
       "m64_s3w8": (64, 64, 64, 64, 3, 8),
       "m64_32s4": (32, 64, 64, 32, 4, 4), "m64_32s2": (32, 64, 64, 32, 2, 4), "m64_32w8": (32, 64, 64, 32, 3, 8),
       "m64_16": (16, 64, 64, 16, 3, 4), "m64_3264": (32, 64, 64, 64, 3, 4)}


class Choices(InductorChoices):
    bwd = None

    def get_flex_attention_fwd_configs(self, head_dim, dtype, device_type="cuda"):
        return [FlexConfig(64, 64, 3, 4)] if self.bwd else super().get_flex_attention_fwd_configs(head_dim, dtype, device_type)

    def get_flex_attention_bwd_configs(self, head_dim, dtype, device_type="cuda"):
        return [FlexBwDConfig(*self.bwd)] if self.bwd else super().get_flex_attention_bwd_configs(head_dim, dtype, device_type)


choices = Choices()
# the backward compiles in autograd's device thread, which has its own (thread-local) handler: install the
# factory for every thread (torch._inductor.config.inductor_choices_class) and this thread's handler
print("HAS_CHOICES_CLASS", hasattr(torch._inductor.config, "inductor_choices_class"), torch.__version__, flush=True)
torch._inductor.config.inductor_choices_class = lambda: choices
V.set_choices_handler(choices)
cfg = tp.parse_config(["--preset", "reference", "--num_layers", "4", "--num_value_embeds", "2", "--fp8", "false"],
                      has_gpu=True)
results = {}
for name in which:
    block = 64 if name.startswith("m64") else 128
    tp.FLEX_BLOCK = block
    tp.block_order.__defaults__ = (block,)
    choices.bwd = BWD.get(name)
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
        r = dict(ms=round(ms, 3), compile_s=round(compile_s, 1), loss=round(float(loss), 5), grad_norm=round(gnorm, 4),
                 mask_blocks=int(mask.kv_num_blocks.sum() + (mask.full_kv_num_blocks.sum() if mask.full_kv_num_blocks is not None else 0)))
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
json.dump(results, open(os.path.join(out_dir, "m64_variants.json"), "w"), indent=1)
