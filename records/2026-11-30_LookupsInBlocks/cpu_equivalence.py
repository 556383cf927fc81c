"""Experiment (session 16): main (exp/train_plm_main.py, 077d777) and this checkout's train_plm.py compute the same
function: the cpu preset's model (float32, eager) with value embeddings, the same seed and weights, one MLM
micro-batch of the embedded sample: loss and every parameter's gradient, largest |new - main| / max |main|.
python3 exp/cpu_equivalence.py (from the checkout root)"""
import importlib.util, sys, torch
res = {}
for name, path in (("main", "exp/train_plm_main.py"), ("new", "train_plm.py")):
    spec = importlib.util.spec_from_file_location("train_plm_" + name, path)
    tp = importlib.util.module_from_spec(spec); spec.loader.exec_module(tp)
    cfg = tp.parse_config(["--preset", "cpu", "--num_layers", "4", "--num_value_embeds", "2"], has_gpu=False)
    loader = tp.PackedLoader(tp.resolve_files(cfg.train_files, "train"), cfg, 0, 1, torch.device("cpu"), 0)
    tokens, starts, g = loader.next()
    gen = torch.Generator("cpu"); gen.manual_seed(1234)
    inputs, labels = tp.mask_tokens(tokens, cfg.mask_rate, gen, cfg.mlm_80_10_10)
    torch.manual_seed(0)
    model = tp.ProteinLM(cfg)
    with torch.no_grad():  # non-zero projections and decoder, so every gradient is non-zero
        for b in model.blocks:
            tp.init_linear(b.attn.out.weight), tp.init_linear(b.mlp.proj.weight)
        tp.init_linear(model.decoder.weight)
    loss = model(inputs, starts, labels)
    loss.backward()
    res[name] = (float(loss), {n: p.grad.clone() for n, p in model.named_parameters()})
    print(f"{name}: {cfg.num_layers} blocks, {cfg.num_value_embeds} value-embedding tables, {tokens.numel()} tokens, loss {float(loss):.8f}")
(lm, gm), (ln, gn) = res["main"], res["new"]
rel = {n: float((gn[n] - gm[n]).abs().max() / gm[n].abs().max()) for n in gm}
worst = sorted(rel.items(), key=lambda kv: -kv[1])[:5]
print(f"loss difference {ln - lm:.3e}; gradients of {len(rel)} parameters, worst relative difference {worst}")
