"""CPU check (session 14): the eager model of two trainer files gives the same loss and gradients, bit for bit
(cpu preset, 6 blocks, FP8 forced on, one 512-token micro-batch of three sequences).
python3 cpu_eager_equal.py A/train_plm.py B/train_plm.py"""
import importlib.util, sys, torch


def load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


res = []
for k, path in enumerate(sys.argv[1:3]):
    tp = load(path, f"tp{k}")
    tp.fp8_active = lambda enabled, x: bool(enabled) and torch.is_grad_enabled()
    cfg = tp.parse_config(["--preset", "cpu", "--num_layers", "6", "--num_value_embeds", "3", "--fp8", "true"], has_gpu=True)
    torch.manual_seed(0)
    model = tp.ProteinLM(cfg)
    with torch.no_grad():  # no zero-initialised output projection or decoder: every gradient is non-zero
        for b in model.blocks:
            tp.init_linear(b.attn.out.weight), tp.init_linear(b.mlp.proj.weight)
        tp.init_linear(model.decoder.weight)
    tokens = torch.randint(4, 24, (512,), generator=torch.Generator().manual_seed(1))
    starts = torch.zeros(512, dtype=torch.bool)
    starts[[0, 200, 350]] = True
    with torch.autocast("cpu", torch.bfloat16):
        loss = model(tokens, starts, tokens)
    loss.backward()
    res.append((loss.detach(), {n: p.grad for n, p in model.named_parameters()}))
(a, ga), (b, gb) = res
print(f"loss {float(a):.9f} / {float(b):.9f}, equal {torch.equal(a, b)}; gradients equal "
      f"{sum(torch.equal(ga[n], gb[n]) for n in ga)} of {len(ga)}")
