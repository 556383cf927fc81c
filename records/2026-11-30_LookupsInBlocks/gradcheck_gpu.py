"""Experiment (session 14; session 16: compile_regions, as train() compiles): GPU gradients of the compiled model against eager, for each trainer file given
(nested_compile_region gave wrong gradients through split regions under inductor on CPU). Reference preset,
FP8 on, N blocks, one real MLM micro-batch; the zero-initialised projections re-initialised so every gradient
is non-zero. Prints per file the worst parameter's max |compiled - eager| / max |eager|, and compares the
files' compiled gradients with each other (same seed, same init).
python3 exp/gradcheck_gpu.py NUM_LAYERS FILE..."""
import importlib.util, sys, time, torch
DEV = "cuda" if torch.cuda.is_available() else "cpu"
nl, files = sys.argv[1], sys.argv[2:]
res = {}
for path in files:
    spec = importlib.util.spec_from_file_location("train_plm", path)
    tp = importlib.util.module_from_spec(spec); sys.modules["train_plm"] = tp; spec.loader.exec_module(tp)
    torch._dynamo.reset()
    torch._inductor.config.inductor_choices_class = tp.KernelChoices  # as train() sets it
    cfg = tp.parse_config(["--preset", "reference", "--num_layers", nl, "--num_value_embeds", str(int(nl) // 2)], has_gpu=True)
    loader = tp.PackedLoader(tp.resolve_files(cfg.train_files, "train"), cfg, 0, 1, torch.device(DEV), 0)
    tokens, starts, g = loader.next()
    gen = torch.Generator(DEV); gen.manual_seed(1234)
    inputs, labels = tp.mask_tokens(tokens, cfg.mask_rate, gen, cfg.mlm_80_10_10)
    torch.manual_seed(0)
    model = tp.ProteinLM(cfg).to(DEV)
    with torch.no_grad():
        for b in model.blocks:
            tp.init_linear(b.attn.out.weight), tp.init_linear(b.mlp.proj.weight)
        tp.init_linear(model.decoder.weight)
    grads = []
    for name in ("eager", "compiled"):
        if name == "compiled":
            tp.compile_regions(model)  # as train() compiles it
        m = model
        t = time.perf_counter()
        model.zero_grad()
        with torch.autocast(DEV, torch.bfloat16):
            loss = m(inputs, starts, labels)
        loss.backward()
        torch.cuda.synchronize() if DEV == "cuda" else None
        print(f"GRAD {path} {name}: loss {float(loss.detach()):.6f} ({time.perf_counter() - t:.1f} s)", flush=True)
        grads.append({n: p.grad.float().clone() for n, p in model.named_parameters() if p.grad is not None})
    eager, comp = grads
    rel = {n: float((comp[n] - e).abs().max() / e.abs().max().clamp_min(1e-30)) for n, e in eager.items()}
    worst = sorted(rel.items(), key=lambda kv: -kv[1])[:5]
    print(f"GRAD {path}: {len(rel)} params, compiled vs eager worst {[(n, round(r, 4)) for n, r in worst]}", flush=True)
    res[path] = comp
if len(files) > 1:
    a, b = (res[f] for f in files[:2])
    rel = {n: float((b[n] - a[n]).abs().max() / a[n].abs().max().clamp_min(1e-30)) for n in a}
    worst = sorted(rel.items(), key=lambda kv: -kv[1])[:5]
    print(f"GRAD {files[1]} vs {files[0]} compiled: worst {[(n, round(r, 4)) for n, r in worst]}; "
          f"bitwise equal {sum(torch.equal(a[n], b[n]) for n in a)}/{len(a)}", flush=True)
