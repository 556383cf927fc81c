"""Experiment (next GPU session): which gradients of one reference micro-batch are not bit-reproducible?
Runs forward + backward of the compiled model twice on the same micro-batch and mask, compares every
parameter's gradient bitwise; then the same with torch.use_deterministic_algorithms(True) (fresh compile).
python3 exp/determinism.py  (GPU; data/reference shards)"""
import os, sys, json
import torch
sys.path.insert(0, os.getcwd())
import train_plm as tp

dev = torch.device("cuda")
cfg = tp.parse_config(["--preset", "reference"], has_gpu=True)
loader = tp.PackedLoader(tp.resolve_files(cfg.train_files, "train"), cfg, 0, 1, dev, 0)
tokens, starts, g = loader.next()
gen = torch.Generator(dev)


def grads(model, cm):
    model.zero_grad(set_to_none=True)
    gen.manual_seed(g)
    inp, lab = tp.mask_tokens(tokens, cfg.mask_rate, gen, cfg.mlm_80_10_10)
    with torch.autocast("cuda", torch.bfloat16):
        loss = cm(inp, starts, lab)
    loss.backward()
    return float(loss), {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


for deterministic in (False, True):
    torch._dynamo.reset()
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.manual_seed(0)
    model = tp.ProteinLM(cfg).to(dev)
    with torch.no_grad():  # move off the zero init so every gradient is non-trivial
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    cm = torch.compile(model, dynamic=False)
    try:
        l1, g1 = grads(model, cm)
        l2, g2 = grads(model, cm)
        diff = {n: float((g1[n] - g2[n]).abs().max()) for n in g1 if not torch.equal(g1[n], g2[n])}
        kinds = sorted({n.split(".")[0] + ("." + n.split(".")[2] if n.startswith("blocks.") else "") for n in diff})
        print("DETERMINISM", json.dumps(dict(deterministic_algorithms=deterministic, loss_equal=l1 == l2,
                                             params=len(g1), differing=len(diff), kinds=kinds,
                                             worst=sorted(diff.items(), key=lambda x: -x[1])[:5])), flush=True)
    except Exception as e:
        print("DETERMINISM", json.dumps(dict(deterministic_algorithms=deterministic, error=repr(e)[:500])), flush=True)
