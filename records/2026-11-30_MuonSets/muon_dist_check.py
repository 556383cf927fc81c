"""Experiment: does Muon on W ranks (each holding its share of the gradient) give bitwise the parameters of
Muon on 1 rank given the summed gradient? torchrun --nproc_per_node=W exp/muon_dist_check.py PATH_TO_train_plm.py
(CPU/gloo with BF16=1: Newton-Schulz in bf16 as on a GPU)."""
import importlib.util, os, sys
import torch, torch.distributed as dist
spec = importlib.util.spec_from_file_location("tp", sys.argv[1])
tp = importlib.util.module_from_spec(spec); spec.loader.exec_module(tp)
cuda = torch.cuda.is_available()
dist.init_process_group("nccl" if cuda else "gloo")
r, W = dist.get_rank(), dist.get_world_size()
dev = torch.device("cuda", r) if cuda else torch.device("cpu")
if cuda:
    torch.cuda.set_device(dev)
if os.environ.get("BF16"):
    ns = tp.newton_schulz
    def nsb(G, steps=5):
        return ns(G.bfloat16(), steps)  # not is_cuda: patch the dtype by hand below
    a, b, c = 3.4445, -4.7750, 2.0315
    def nsb(G, steps=5):
        X = G.bfloat16(); tall = G.size(-2) > G.size(-1)
        X = X.mT if tall else X
        X = X / (X.norm(dim=(-2, -1), keepdim=True) + 1e-7)
        for _ in range(steps):
            A = X @ X.mT; X = a * X + (b * A + c * A @ A) @ X
        return X.mT if tall else X
    tp.newton_schulz = nsb
small = os.environ.get("SMALL")
cfg = tp.parse_config(["--preset", "cpu", "--num_layers", "24", "--model_dim", "64", "--num_value_embeds", "12"] if small else ["--preset", "reference"], has_gpu=cuda)
def hidden(model):
    return [p for n, p in model.named_parameters() if p.dim() >= 2 and "blocks" in n]
torch.manual_seed(0); m_w = tp.ProteinLM(cfg).to(dev)
torch.manual_seed(0); m_1 = tp.ProteinLM(cfg).to(dev)
opt_w = tp.Muon(hidden(m_w), lr=0.05, rank=r, world_size=W)
opt_1 = tp.Muon(hidden(m_1), lr=0.05)
for step in range(3):
    shares = []
    for q in range(W):
        g = torch.Generator(dev).manual_seed(1000 * step + q)
        shares.append([torch.randn(p.shape, generator=g, device=dev) * 1e-3 for p in hidden(m_w)])
    for p, s in zip(hidden(m_w), shares[r]):
        p.grad = s.clone()
    total = tp.tree_sum([[s.clone() for s in sh] for sh in shares])
    for p, s in zip(hidden(m_1), total):
        p.grad = s
    opt_w.step(); opt_1.step()
    if cuda: torch.cuda.synchronize()
    bad = [(i, tuple(a.shape)) for i, (a, b) in enumerate(zip(hidden(m_w), hidden(m_1))) if not torch.equal(a, b)]
    print(f"MUONCHECK rank {r} step {step} differing {len(bad)} of {len(hidden(m_w))}: {bad[:8]}", flush=True)
dist.destroy_process_group()
