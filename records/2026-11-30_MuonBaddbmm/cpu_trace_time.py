"""CPU check (session 11): dynamo + AOTAutograd tracing time (backend aot_eager, no inductor) of the reference model
with FP8 forced on (fp8_active patched to True while gradients are on), one 256-token forward + backward, for a
given train_plm.py. python records/2026-11-30_MuonBaddbmm/cpu_trace_time.py FILE aot_eager
On CPU the Triton ops are not traced (qkv_prep and relu2_fp8 take their PyTorch paths)."""
import importlib.util, sys, time, torch
path = sys.argv[1]
spec = importlib.util.spec_from_file_location("train_plm", path); tp = importlib.util.module_from_spec(spec)
sys.modules["train_plm"] = tp; spec.loader.exec_module(tp)
tp.fp8_active = lambda enabled, x: bool(enabled) and torch.is_grad_enabled()
cfg = tp.parse_config(["--preset", "reference"], has_gpu=True)
torch.manual_seed(0)
model = tp.ProteinLM(cfg)
T = 256
tokens = torch.randint(4, 24, (T,)); starts = torch.zeros(T, dtype=torch.bool); starts[0] = True; starts[128] = True
labels = tokens.clone()
cm = torch.compile(model, backend=sys.argv[2], dynamic=False)
t = time.perf_counter()
with torch.autocast("cpu", torch.bfloat16):
    loss = cm(tokens, starts, labels)
loss.backward()
print(path, sys.argv[2], "first fwd+bwd", round(time.perf_counter() - t, 1), "s")
