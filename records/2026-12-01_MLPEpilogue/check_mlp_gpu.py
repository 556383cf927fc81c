"""GPU check (issue 3, MLPEpilogue): MLPFP8 on the reference shapes against the float32 MLP, and the op's Triton
kernel against mlp_fp8_reference on the same CUDA inputs. python3 exp/check_mlp_gpu.py"""
import os, sys, json
import torch
import torch.nn.functional as F
sys.path.insert(0, os.getcwd())
import train_plm as tp

torch.manual_seed(0)
T, D, H = 65536, 768, 1536
x = torch.randn(T, D, device="cuda").bfloat16().requires_grad_()
w_fc = ((torch.rand(H, D, device="cuda") * 2 - 1) * 0.5 * (3 / D) ** 0.5).requires_grad_()
w_proj = ((torch.rand(D, H, device="cuda") * 2 - 1) * 0.5 * (3 / H) ** 0.5).requires_grad_()
g = (torch.randn(T, D, device="cuda") * 1e-3).bfloat16()
y = tp.MLPFP8.apply(x, w_fc, w_proj, *tp.fp8_weight(w_fc, "fc"), *tp.fp8_weight(w_proj, "proj"))
y.backward(g)
xf, wf, wp = (t.detach().float().requires_grad_() for t in (x, w_fc, w_proj))
yf = F.relu(xf @ wf.t()).square() @ wp.t()
yf.backward(g.float())
rel = lambda a, b: float((a.detach().float() - b.detach().float()).norm() / b.detach().float().norm())
out = {"y": rel(y, yf), "dx": rel(x.grad, xf.grad), "dw_fc": rel(w_fc.grad, wf.grad), "dw_proj": rel(w_proj.grad, wp.grad)}
x8, xs = tp.fp8_rowwise(x.detach())
fc8, fcs = tp.fp8_weight(w_fc, "fc")[:2]
for aux in (None, torch.rand(T, H, device="cuda").bfloat16()):
    k = tp.mlp_fp8_triton(x8, xs, fc8, fcs, aux)
    r = tp.mlp_fp8_reference(x8, xs, fc8, fcs, aux)
    name = "fwd" if aux is None else "bwd"
    out[f"kernel_{name}_y"] = rel(k[0], r[0])
    out[f"kernel_{name}_scales_equal_share"] = float((k[2] == r[2]).float().mean())
    out[f"kernel_{name}_e4m3_equal_share"] = float((k[1].float() == r[1].float()).float().mean())
print("CHECK", json.dumps(out), flush=True)
