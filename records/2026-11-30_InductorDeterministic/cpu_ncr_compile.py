"""CPU check (session 12): compile + first forward/backward of the reference model (FP8 path forced on with
"--fp8 true", one 256-token micro-batch of two sequences) for a given train_plm.py and torch.compile backend; prints the
time, the compiled and eager losses and the largest gradient difference against eager. Used for main against
ncr.patch (blocks as torch.compiler.nested_compile_region): cpu_ncr_compile.out.
python3 cpu_ncr_compile.py FILE aot_eager|inductor --preset reference --fp8 true"""
import importlib.util, sys, time, torch
path = sys.argv[1]
spec = importlib.util.spec_from_file_location("train_plm", path); tp = importlib.util.module_from_spec(spec)
sys.modules["train_plm"] = tp; spec.loader.exec_module(tp)
args = sys.argv[3:]
if "--fp8" in args: tp.fp8_active = lambda enabled, x: bool(enabled) and torch.is_grad_enabled()
cfg = tp.parse_config(args, has_gpu=True)
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
cm = torch.compile(model, backend=sys.argv[2], dynamic=False)
t = time.perf_counter()
with ac():
    loss = cm(tokens, starts, labels)
loss.backward()
print(path, sys.argv[2], "first fwd+bwd", round(time.perf_counter() - t, 1), "s", float(loss), float(ref),
      max(float((p.grad - g).abs().max()) for p, g in zip(model.parameters(), gref)))
