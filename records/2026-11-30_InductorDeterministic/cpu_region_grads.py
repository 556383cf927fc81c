"""CPU check (session 13): compiled against eager gradients of a 4-block reference model (FP8 path forced, one
256-token micro-batch of two sequences), per parameter; prints those whose largest difference exceeds 0.1% of
the largest |gradient|. python3 cpu_region_grads.py FILE aot_eager|inductor"""
import importlib.util, sys, time, torch
path = sys.argv[1]
spec = importlib.util.spec_from_file_location("train_plm", path); tp = importlib.util.module_from_spec(spec)
sys.modules["train_plm"] = tp; spec.loader.exec_module(tp)
tp.fp8_active = lambda enabled, x: bool(enabled) and torch.is_grad_enabled()
cfg = tp.parse_config(["--preset", "reference", "--fp8", "true", "--num_layers", "4", "--num_value_embeds", "1"], has_gpu=True)
torch.manual_seed(0)
model = tp.ProteinLM(cfg)
for b in model.blocks:
    tp.init_linear(b.attn.out.weight); tp.init_linear(b.mlp.proj.weight)
tp.init_linear(model.decoder.weight)
T = 256
tokens = torch.randint(4, 24, (T,)); starts = torch.zeros(T, dtype=torch.bool); starts[0] = True; starts[128] = True
ac = lambda: torch.autocast('cpu', torch.bfloat16)
with ac(): ref = model(tokens, starts, tokens)
ref.backward(); gref = {n: p.grad.clone() for n, p in model.named_parameters()}
model.zero_grad()
cm = torch.compile(model, backend=sys.argv[2], dynamic=False)
with ac(): loss = cm(tokens, starts, tokens)
loss.backward()
print(path, sys.argv[2], float(loss), float(ref))
for n, p in model.named_parameters():
    d = float((p.grad - gref[n]).abs().max()); r = float(gref[n].abs().max())
    if d > 1e-3 * max(r, 1e-6): print(f"  {n}: max diff {d:.3g} (max |grad| {r:.3g})")
