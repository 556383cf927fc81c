"""How much of a document-masked FlexAttention's work is useful, by mask block size: for the first N
micro-batches of the reference preset's stream (data/reference shards, seed 0), the share of the computed
tiles' entries (tiles holding any pair of tokens of one sequence) that pair two tokens of one sequence,
sum(n^2) / (tiles x block^2), with each micro-batch packed by block_order for that block size, and in stream
order. Run from the repository root, on CPU:

    python records/2026-11-30_Flex64/tile_use.py [N]
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.getcwd())
import train_plm as tp  # noqa: E402


def measure(block, n, ordered=True):
    tp.FLEX_BLOCK = block  # document_block_mask and the loader's packing read the module's block size
    order = tp.block_order
    tp.block_order = (lambda lengths, b=block: order(lengths, b)) if ordered else (lambda lengths, b=block: list(range(len(lengths))))
    cfg = tp.parse_config(["--preset", "reference"], has_gpu=True)
    loader = tp.PackedLoader.__new__(tp.PackedLoader)  # the host-side stream only (no thread, no device)
    loader.shards, loader.seqs = tp.index_sequences(tp.resolve_files(cfg.train_files, "train"))
    loader.T, loader.max_length = cfg.tokens_per_micro_batch, cfg.max_length
    loader.rank, loader.world, loader.seed = 0, 1, 0
    useful = computed = 0
    try:
        for k, (tokens, starts, *_) in enumerate(loader.batches()):
            if k == n:
                break
            doc, _ = tp.document_ids(torch.from_numpy(starts))
            mask = tp.document_block_mask(doc, 0)
            computed += int(mask.kv_num_blocks.sum() + mask.full_kv_num_blocks.sum()) * block ** 2
            edges = np.flatnonzero(np.append(starts, True))
            useful += float((np.diff(edges).astype(float) ** 2).sum())
    finally:
        tp.block_order = order
    return useful / computed, computed / n


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 16
    base = measure(128, n)[1]
    for block in (128, 64, 32):
        (packed, tiles), (stream, _) = measure(block, n), measure(block, n, ordered=False)
        print(f"{block:3d}-token blocks, {n} micro-batches: useful share of the computed tile entries {packed:.3f} in "
              f"block_order ({stream:.3f} in stream order); computed entries per micro-batch {tiles / 1e6:.1f}M "
              f"(x {tiles / base:.3f} against 128)")
