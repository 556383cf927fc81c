"""Experiment (issue 3): the slices' gradients (bench_slice.py's slice_NAME_grads.pt, same init and micro-batch)
against a reference slice's: relative error ||g - ref|| / ||ref|| summed over each kind of parameter.
python3 exp/grad_compare.py DIR REF NAME..."""
import re, sys
import torch
d, ref_name, names = sys.argv[1], sys.argv[2], sys.argv[3:]
ref = torch.load(f"{d}/slice_{ref_name}_grads.pt")
kind = lambda n: re.sub(r"\.\d+\.", ".*.", n)
for name in names:
    g = torch.load(f"{d}/slice_{name}_grads.pt")
    err, norm = {}, {}
    for n, r in ref.items():
        k = kind(n)
        err[k] = err.get(k, 0.0) + float((g[n] - r).pow(2).sum())
        norm[k] = norm.get(k, 0.0) + float(r.pow(2).sum())
    print("GRADS", name, "vs", ref_name, " ".join(f"{k}:{(err[k] / max(norm[k], 1e-30)) ** 0.5:.4f}" for k in sorted(err)), flush=True)
