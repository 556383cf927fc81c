"""CPU check (session 12): FP8Linear's weight gradient with wg8.patch (both operands FP8, one scale per channel)
against float32, for a 512 x 64 x 96 product of Gaussian operands. python3 cpu_fp8_wgrad.py FILE, where FILE is
this folder's train_plm.py with wg8.patch applied (torch 2.13 runs torch._scaled_mm on CPU)."""
import importlib.util, sys, torch
spec = importlib.util.spec_from_file_location("tp", sys.argv[1]); tp = importlib.util.module_from_spec(spec)
sys.modules["tp"] = tp; spec.loader.exec_module(tp)
print("torch", torch.__version__)
torch.manual_seed(0)
T, K, N = 512, 64, 96
x = torch.randn(T, K, dtype=torch.bfloat16, requires_grad=True)
w = (torch.randn(N, K, dtype=torch.bfloat16) * 0.1).requires_grad_()
g = torch.randn(T, N, dtype=torch.bfloat16)
tp.FP8Linear.apply(x, w, True).backward(g)
ref = g.float().t() @ x.float()
print("weight gradient, relative error against float32:", ((w.grad.float() - ref).norm() / ref.norm()).item())
