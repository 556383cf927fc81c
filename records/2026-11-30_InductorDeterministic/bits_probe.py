"""Experiment (session 12 found: main's code trained with two sets of bits on two H200 machines). Prints this
machine's identity and digests of (a) Muon's newton_schulz and a plain baddbmm on seeded inputs, (b) one
compiled forward + backward of a 4-block reference slice (trainer's inductor settings, real micro-batch, all
weights random so every gradient is non-zero). Run it on several machines and compare the BITS lines: the
first that differs locates the machine dependence. python3 exp/bits_probe.py [train_plm.py]"""
import hashlib, importlib.util, os, platform, subprocess, sys
import torch
path = sys.argv[1] if len(sys.argv) > 1 else "train_plm.py"
sys.path.insert(0, os.getcwd())
spec = importlib.util.spec_from_file_location("train_plm", path)
tp = importlib.util.module_from_spec(spec); sys.modules["train_plm"] = tp; spec.loader.exec_module(tp)
dev = torch.device("cuda")
p = torch.cuda.get_device_properties(dev)
print("MACHINE", platform.node(), p.name, f"sm {p.multi_processor_count}", f"L2 {getattr(p, 'L2_cache_size', '?')}",
      f"mem {p.total_memory >> 20} MiB", f"torch {torch.__version__}", f"cuda {torch.version.cuda}",
      f"cudnn {torch.backends.cudnn.version()}", flush=True)
try:
    q = subprocess.run(["nvidia-smi", "--query-gpu=serial,vbios_version,clocks.max.sm,clocks.max.mem,power.limit,ecc.mode.current,pci.bus_id",
                        "--format=csv,noheader"], capture_output=True, text=True, timeout=20).stdout.strip()
    print("MACHINE nvidia-smi", q, flush=True)
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print("MACHINE cpu", cpu, os.cpu_count(), flush=True)
except Exception as e:
    print("MACHINE query failed", e)
h = lambda t: hashlib.sha256(t.detach().reshape(-1).contiguous().view(torch.uint8).cpu().numpy().tobytes()).hexdigest()[:16]
g = torch.Generator(dev).manual_seed(0)
for shape in ((9, 768, 768), (3, 768, 1536), (3, 1536, 768)):
    G = torch.randn(*shape, device=dev, generator=g)
    print("BITS newton_schulz", shape, h(tp.newton_schulz(G)), flush=True)
    A = torch.randn(shape[0], shape[1], shape[1], device=dev, generator=g).bfloat16()
    X = torch.randn(*shape, device=dev, generator=g).bfloat16()
    print("BITS baddbmm", shape, h(torch.baddbmm(X, A, X, beta=3.4445, alpha=1)), flush=True)
torch._inductor.config.deterministic = True
torch._inductor.config.inductor_choices_class = tp.KernelChoices
cfg = tp.parse_config(["--preset", "reference", "--num_layers", "4", "--num_value_embeds", "2"], has_gpu=True)
loader = tp.PackedLoader(tp.resolve_files(cfg.train_files, "train"), cfg, 0, 1, dev, 0)
tokens, starts, gi = loader.next()
gen = torch.Generator(dev); gen.manual_seed(gi)
inputs, labels = tp.mask_tokens(tokens, cfg.mask_rate, gen, True)
print("BITS batch", h(inputs), h(labels), flush=True)
torch.manual_seed(0)
model = tp.ProteinLM(cfg).to(dev)
with torch.no_grad():
    for b in model.blocks:
        tp.init_linear(b.attn.out.weight); tp.init_linear(b.mlp.proj.weight)
    tp.init_linear(model.decoder.weight)
import inspect, traceback
import torch._inductor.fx_passes.pad_mm as pad_mm
print("BITS can_pad checks deterministic:", "config.deterministic" in inspect.getsource(pad_mm.can_pad), flush=True)
_faster = pad_mm.is_padded_faster
def traced_faster(key, ori_time, pad_time):
    r = _faster(key, ori_time, pad_time)
    print(f"BITS pad_mm timed choice: deterministic={torch._inductor.config.deterministic} "
          f"shape_padding={torch._inductor.config.shape_padding} ori {ori_time:.4f} ms pad {pad_time:.4f} ms -> pad {r} | {key[:300]}", flush=True)
    print("BITS   from", " <- ".join(f"{f.name}" for f in traceback.extract_stack()[-12:-1]), flush=True)
    return r
pad_mm.is_padded_faster = traced_faster
cm = torch.compile(model, dynamic=False)
for i in range(2):
    model.zero_grad(set_to_none=True)
    with torch.autocast("cuda", torch.bfloat16):
        loss = cm(inputs, starts, labels)
    loss.backward()
    grads = torch.cat([p.grad.flatten().float() for p in model.parameters() if p.grad is not None])
    print(f"BITS slice run {i}: loss {float(loss):.6f}", h(loss), "grads", h(grads), flush=True)
# timed choices inductor may still make (pad_mm benchmarks padded against unpadded products unless its
# deterministic mode forbids it: a timing-dependent choice would explain machine-dependent bits)
from torch._dynamo.utils import counters
print("BITS inductor counters", {k: v for k, v in sorted(counters["inductor"].items())}, flush=True)
