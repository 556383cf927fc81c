"""Experiment (issue 3): attention_inputs' index work (document_ids + document_ranges) of this checkout (binary
searches) against main's (cummax / cummin scans) on the first 8 micro-batches of the reference stream: equal
outputs, time per call (CUDA events, median of 50). python3 exp/bench_ranges.py"""
import importlib.util, json, os, sys
import torch
sys.path.insert(0, os.getcwd())
import train_plm as tp
spec = importlib.util.spec_from_file_location("train_plm_main", "exp/train_plm_main.py")
tpm = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tpm)
dev = torch.device("cuda")
torch.use_deterministic_algorithms(True)
cfg = tp.parse_config(["--preset", "reference"], has_gpu=True)
loader = tp.PackedLoader(tp.resolve_files(cfg.train_files, "train"), cfg, 0, 1, dev, 0)
rows = [loader.next()[1] for _ in range(8)]
same = all(all(torch.equal(a, b) for a, b in zip(tp.document_ranges(*tp.document_ids(s)), tpm.document_ranges(*tpm.document_ids(s))))
           and torch.equal(tp.document_ids(s)[1], tpm.document_ids(s)[1]) for s in rows)
res = {"equal_outputs_8_microbatches": same}
for name, mod in (("main", tpm), ("new", tp)):
    times = []
    for i in range(60):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        mod.document_ranges(*mod.document_ids(rows[i % 8]))
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    res[f"{name}_ms_median"] = round(sorted(times[10:])[25], 4)
print("RANGES", json.dumps(res), flush=True)
