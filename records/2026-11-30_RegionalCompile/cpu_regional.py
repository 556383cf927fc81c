"""CPU check (session 14): regional compilation (each Block compiled on its own, torch.compile's recipe for
repeated layers; dynamo reuses the compiled block across instances because parameters are graph inputs) against
whole-model compile: compile + first forward/backward of the reference model (FP8 path forced), one 256-token
micro-batch; loss and largest gradient difference against eager.
python3 exp/cpu_regional.py FILE whole|regional|compile_regions"""
import importlib.util, sys, time, torch
path, mode = sys.argv[1], sys.argv[2]
spec = importlib.util.spec_from_file_location("train_plm", path); tp = importlib.util.module_from_spec(spec)
sys.modules["train_plm"] = tp; spec.loader.exec_module(tp)
tp.fp8_active = lambda enabled, x: bool(enabled) and torch.is_grad_enabled()
cfg = tp.parse_config(["--preset", "reference", "--fp8", "true"], has_gpu=True)
torch.manual_seed(0)
model = tp.ProteinLM(cfg)
for b in model.blocks:
    tp.init_linear(b.attn.out.weight); tp.init_linear(b.mlp.proj.weight)
tp.init_linear(model.decoder.weight)
T = 256
tokens = torch.randint(4, 24, (T,)); starts = torch.zeros(T, dtype=torch.bool); starts[0] = True; starts[128] = True
labels = tokens.clone()
ac = lambda: torch.autocast('cpu', torch.bfloat16)
with ac():
    ref = model(tokens, starts, labels)
ref.backward(); gref = [p.grad.clone() for p in model.parameters()]
model.zero_grad()
if mode == "whole":
    cm = torch.compile(model, dynamic=False, options=tp.INDUCTOR_OPTIONS)
elif mode == "compile_regions":
    cm = tp.compile_regions(model)
else:
    for b in model.blocks:
        b.compile(dynamic=False, options=tp.INDUCTOR_OPTIONS)
    cm = model
t = time.perf_counter()
with ac():
    loss = cm(tokens, starts, labels)
t1 = time.perf_counter() - t
loss.backward()
print(path, mode, "first fwd", round(t1, 1), "s, fwd+bwd", round(time.perf_counter() - t, 1), "s", float(loss), float(ref),
      max(float((p.grad - g).abs().max()) for p, g in zip(model.parameters(), gref)), flush=True)
t = time.perf_counter()
model.zero_grad()
with ac():
    loss = cm(tokens, starts, labels)
loss.backward()
print("second fwd+bwd", round(time.perf_counter() - t, 2), "s")
