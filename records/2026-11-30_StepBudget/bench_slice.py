"""Experiment (issue 3): a 4-block slice of the reference model with FP8 (the trainer's settings: deterministic
inductor, KernelChoices), one real micro-batch (65,536 tokens), forward + backward, mean ms (do_bench), for a
given train_plm.py copy; then its kernels, profiled. Each copy in its own process (their Triton ops have their
own namespaces). python3 exp/bench_slice.py FILE NAME OUT_DIR [more trainer flags, e.g. --fp8 false]"""
import importlib.util, json, os, sys, time
import torch
path, name, out_dir = sys.argv[1:4]
sys.path.insert(0, os.getcwd())
spec = importlib.util.spec_from_file_location("train_plm", path)
tp = importlib.util.module_from_spec(spec)
sys.modules["train_plm"] = tp
spec.loader.exec_module(tp)
from triton.testing import do_bench
from torch.profiler import profile, ProfilerActivity
dev = torch.device("cuda")
torch._inductor.config.deterministic = True
torch._inductor.config.inductor_choices_class = tp.KernelChoices
cfg = tp.parse_config(["--preset", "reference", "--num_layers", "4", "--num_value_embeds", "2"] + sys.argv[4:], has_gpu=True)
loader = tp.PackedLoader(tp.resolve_files(cfg.train_files, "train"), cfg, 0, 1, dev, 0)
for _ in range(3):
    tokens, starts, g = loader.next()
gen = torch.Generator(dev)
gen.manual_seed(g)
inputs, labels = tp.mask_tokens(tokens, cfg.mask_rate, gen, True)
torch.manual_seed(0)
model = tp.ProteinLM(cfg).to(dev)
with torch.no_grad():
    for b in model.blocks:
        tp.init_linear(b.attn.out.weight)
        tp.init_linear(b.mlp.proj.weight)
cm = torch.compile(model, dynamic=False)


def fb():
    with torch.autocast("cuda", torch.bfloat16):
        loss = cm(inputs, starts, labels)
    loss.backward()
    return loss


t0 = time.time()
loss = fb()
torch.cuda.synchronize()
compile_s = time.time() - t0
params = list(model.parameters())
ms = do_bench(fb, warmup=20, rep=400, grad_to_none=params)
model.zero_grad(set_to_none=True)
fb()
grads = {n: p.grad.float() for n, p in model.named_parameters() if p.grad is not None}
torch.save(grads, os.path.join(out_dir, f"slice_{name}_grads.pt"))
print("SLICE", name, json.dumps(dict(ms=round(ms, 3), compile_s=round(compile_s, 1), loss=round(float(loss), 5))), flush=True)
with profile(activities=[ProfilerActivity.CUDA]) as prof:
    for _ in range(3):
        fb()
    torch.cuda.synchronize()
rows = sorted(((e.device_time_total / 3e3, e.count // 3, e.key[:140]) for e in prof.key_averages()
               if e.device_time_total > 0), reverse=True)
with open(os.path.join(out_dir, f"slice_{name}_kernels.txt"), "w") as f:
    for t, c, k in rows:
        f.write(f"{t:8.3f} ms {c:5d}x  {k}\n")
