"""GPU check of flex_attention_compiled (config patched in around the call) against eager flex_attention, with a
64-token document mask. python3 exp/gpu_flexcheck.py"""
import torch, time
import train_plm as tp
from torch.nn.attention.flex_attention import flex_attention
t0 = time.time()
T, H, D = 8192, 6, 128
starts = torch.zeros(T, dtype=torch.bool, device="cuda")
starts[::300] = True
doc, _ = tp.document_ids(starts)
mask = tp.document_block_mask(doc, 0)
q, k, v = (torch.randn(1, H, T, D, device="cuda", dtype=torch.bfloat16) for _ in range(3))
print("config before", torch._inductor.config.inductor_choices_class, flush=True)
o = tp.flex_attention_compiled(q, k, v, mask)
print("config after", torch._inductor.config.inductor_choices_class, "compile+run", round(time.time() - t0, 1), "s", flush=True)
ref = flex_attention(q, k, v, block_mask=mask)
print("max |compiled - eager|", float((o.float() - ref.float()).abs().max()), torch.__version__, flush=True)
