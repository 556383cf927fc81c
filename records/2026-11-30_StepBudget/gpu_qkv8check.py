"""GPU check of exp/train_plm_qkv8.py's qkv_prep_backward_fp8 kernel (qkv_prep's backward + the qkv gradient's
row-wise FP8 cast) against its float32 reference path (run on CPU copies) and against the trainer's present
kernel (_qkv_prep_bwd, then fp8_rowwise compiled): dqkv bits, scales, fp8 bytes, dve, dlam; and the times of
(a) the new kernel and (b) the old kernel + the compiled cast, at the reference size. python3 exp/gpu_qkv8check.py"""
import importlib.util, os, sys
import torch
spec = importlib.util.spec_from_file_location("train_plm", os.path.join(os.path.dirname(__file__), "train_plm_qkv8.py"))
tp = importlib.util.module_from_spec(spec); sys.modules["train_plm"] = tp; spec.loader.exec_module(tp)
from triton.testing import do_bench
torch._inductor.config.deterministic = True
torch._inductor.config.inductor_choices_class = tp.KernelChoices
torch.manual_seed(0)
T, H, hd = 65536, 6, 128
dev = "cuda"
qkv = torch.randn(T, 3 * H * hd, device=dev).bfloat16()
ve = torch.randn(T, 2 * H * hd, device=dev).bfloat16().chunk(2, 1)[1]
lam = torch.tensor([0.7, -0.4], device=dev)
angles = torch.rand(T, 1, hd // 2, device=dev) * 6
cos, sin = angles.cos(), angles.sin()
dq, dk, dv = (torch.randn(T, H, hd, device=dev).bfloat16() for _ in range(3))
new = tp.qkv_prep_backward_fp8(dq, dk, dv, qkv, ve, lam, cos, sin, H)
ops = getattr(torch.ops, tp.QKV_OPS)
old_dqkv, old_dve, old_dlam = ops.qkv_prep_backward(dq, dk, dv, qkv, ve.contiguous(), lam, cos.squeeze(1), sin.squeeze(1), H)
cast = torch.compile(tp.fp8_rowwise, dynamic=False)
old8, olds = cast(old_dqkv)
u = lambda t: t.view(torch.uint8)
print(f"QKV8 dqkv equal to the present kernel's: {torch.equal(new[0], old_dqkv)}; dve {torch.equal(new[3], old_dve)}; "
      f"dlam max diff {float((new[4] - old_dlam).abs().max()):.3e}", flush=True)
print(f"QKV8 against the compiled cast of the present dqkv: scales equal {torch.equal(new[2], olds)}, fp8 bytes differing "
      f"{int((u(new[1]) != u(old8)).sum())} of {old8.numel()}", flush=True)
n = 8192  # the float32 reference on the first rows (CPU)
ref = tp.qkv_prep_backward_fp8(*(t[:n].cpu() for t in (dq, dk, dv, qkv, ve)), lam.cpu(), cos[:n].cpu(), sin[:n].cpu(), H)
err = float((new[0][:n].cpu().float() - ref[0].float()).abs().max() / ref[0].float().abs().max())
print(f"QKV8 dqkv against the float32 reference (first {n} rows): max rel {err:.2e}", flush=True)
t_new = do_bench(lambda: tp.qkv_prep_backward_fp8(dq, dk, dv, qkv, ve, lam, cos, sin, H), warmup=25, rep=200)
t_old = do_bench(lambda: cast(ops.qkv_prep_backward(dq, dk, dv, qkv, ve.contiguous(), lam, cos.squeeze(1), sin.squeeze(1), H)[0]), warmup=25, rep=200)
t_old_only = do_bench(lambda: ops.qkv_prep_backward(dq, dk, dv, qkv, ve.contiguous(), lam, cos.squeeze(1), sin.squeeze(1), H), warmup=25, rep=200)
print(f"QKV8 time: new kernel {t_new:.4f} ms; present kernel {t_old_only:.4f} ms, + compiled cast {t_old:.4f} ms", flush=True)
