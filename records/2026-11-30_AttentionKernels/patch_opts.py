"""Experiment: write exp/train_plm_opt.py = train_plm.py with FlexAttention kernel options (from a sweep's pair json) in
the compiled training model. python3 exp/patch_opts.py PAIR.json"""
import json, sys
best = json.load(open(sys.argv[1]))["best"]["opts"]
s = open("train_plm.py").read()
old = "            y = attend(q, k, v, block_mask=mask)\n"
assert s.count(old) == 1
new = (f"            y = (flex_attention(q, k, v, block_mask=mask, kernel_options={best!r}) if torch.compiler.is_compiling()\n"
       "                 else attend(q, k, v, block_mask=mask))\n")
open("exp/train_plm_opt.py", "w").write(s.replace(old, new))
print("PATCHED", best)
