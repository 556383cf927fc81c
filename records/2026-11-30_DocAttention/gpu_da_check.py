"""Experiment (session 15): train_plm.doc_attention on the GPU in bf16 against segment_attention in float32
(random protein-like lengths, 8,192 tokens, 6 heads x 128; window 0 and 100); the same bits twice.
python3 exp/gpu_da_check.py FILE"""
import importlib.util, sys, numpy as np, torch
spec = importlib.util.spec_from_file_location("train_plm", sys.argv[1])
tp = importlib.util.module_from_spec(spec); sys.modules["train_plm"] = tp; spec.loader.exec_module(tp)
dev = "cuda"
rng = np.random.default_rng(0)
T, H, hd = 8192, 6, 128
lengths = []
while sum(lengths) < T - 1100:
    lengths.append(int(min(1024, max(1, rng.lognormal(5.3, 0.6)))))
lengths.append(T - sum(lengths))
starts = torch.zeros(T, dtype=torch.bool, device=dev)
starts[torch.tensor(np.cumsum([0] + lengths[:-1]), device=dev)] = True
doc, pos = tp.document_ids(starts)
torch.manual_seed(0)
for window in (0, 100):
    mask = tp.document_ranges(doc, pos, window)
    q, k, v = (torch.randn(T, H, hd, device=dev) for _ in range(3))
    q, k = (t / t.pow(2).mean(-1, keepdim=True).sqrt() for t in (q, k))  # QK-normed rows, as in the model
    go = torch.randn(T, H, hd, device=dev)
    res = []
    for _ in range(2):
        qb, kb, vb = (t.bfloat16().requires_grad_() for t in (q, k, v))
        y = tp.doc_attention(qb, kb, vb, *mask, window)
        res.append([y.detach()] + list(torch.autograd.grad(y, (qb, kb, vb), go.bfloat16())))
    q32, k32, v32 = (t.bfloat16().float().requires_grad_() for t in (q, k, v))
    y32 = tp.segment_attention(*(t.transpose(0, 1)[None] for t in (q32, k32, v32)), lengths, window)[0].transpose(0, 1)
    want = [y32.detach()] + list(torch.autograd.grad(y32, (q32, k32, v32), go.bfloat16().float()))
    errs = {n: round(float((a.float() - b).norm() / b.norm()), 5) for n, a, b in zip(("o", "dq", "dk", "dv"), res[0], want)}
    same = all(torch.equal(a, b) for a, b in zip(*res))
    print(f"DA window {window}: sequences {len(lengths)}, rel err vs fp32 {errs}, same bits twice {same}", flush=True)
