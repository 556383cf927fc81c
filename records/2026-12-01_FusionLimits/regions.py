"""CPU analysis (issue 3): on the first 4 reference micro-batches, the key ranges of doc_attention (64-token blocks):
tile pairs per head, and the "regions" (maximal runs of blocks closed under their ranges, which a deterministic fused
backward without atomics would give one program each): their count and their largest work (tile pairs) against
an even share per multiprocessor. python3 regions.py (from the checkout root)"""
import sys, os, numpy as np, torch
sys.path.insert(0, os.getcwd())
import train_plm as tp
cfg = tp.parse_config(["--preset", "reference"], has_gpu=False)
ld = tp.PackedLoader(tp.resolve_files(cfg.train_files, "train"), cfg, 0, 1, torch.device("cpu"), 0)
for mb in range(4):
    tokens, starts, g = ld.next()
    doc, pos = tp.document_ids(starts)
    _, lo, hi = tp.document_ranges(doc, pos)
    lo, hi = (lo // 64).numpy(), (hi // 64).numpy()
    nb = len(lo)
    pairs = (hi - lo).sum()
    # regions: maximal runs of blocks closed under ranges
    regions, start, reach = [], 0, 0
    for b in range(nb):
        reach = max(reach, hi[b])
        if reach == b + 1:
            regions.append((start, b + 1, int((hi[start:b+1] - lo[start:b+1]).sum()))); start = b + 1
    work = sorted([r[2] for r in regions], reverse=True)
    sq = sum((e - s) ** 2 for s, e, _ in regions)
    print(f"mb {mb}: blocks {nb}, tile pairs/head {pairs}, regions {len(regions)}, largest regions' pairs {work[:6]}, per-SM share (6 heads/132) {pairs*6/132:.0f}")
