"""How much of the attention work a document-masked FlexAttention does is useful, with and without block_order.

For the first N micro-batches of the reference preset's stream (data/reference shards, seed 0): the share of
the entries of the computed 128x128 tiles (tiles holding any pair of tokens of one sequence) that pair two
tokens of one sequence (padding pieces count as sequences, as the mask treats them), i.e.
sum(n^2) / (tiles x 128^2). Run from the repository root, on CPU:

    python records/2026-11-30_RopeTablesBlockOrder/tile_use.py [N]
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.getcwd())
import train_plm as tp  # noqa: E402


def useful_share(tokens, starts):
    doc, _ = tp.document_ids(torch.from_numpy(starts))
    mask = tp.document_block_mask(doc, 0)
    tiles = int(mask.kv_num_blocks.sum() + mask.full_kv_num_blocks.sum())
    edges = np.flatnonzero(np.append(starts, True))
    return float((np.diff(edges).astype(float) ** 2).sum()), tiles * tp.FLEX_BLOCK ** 2


def measure(n):
    cfg = tp.parse_config(["--preset", "reference"], has_gpu=True)
    loader = tp.PackedLoader.__new__(tp.PackedLoader)  # the host-side stream only (no thread, no device)
    loader.shards, loader.seqs = tp.index_sequences(tp.resolve_files(cfg.train_files, "train"))
    loader.T, loader.max_length = cfg.tokens_per_micro_batch, cfg.max_length
    loader.rank, loader.world, loader.seed = 0, 1, 0
    useful = computed = 0
    for k, (tokens, starts, *_) in enumerate(loader.batches()):
        if k == n:
            return useful / computed
        u, c = useful_share(tokens, starts)
        useful, computed = useful + u, computed + c


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 16
    packed = measure(n)
    order = tp.block_order
    tp.block_order = lambda lengths, block=tp.FLEX_BLOCK: list(range(len(lengths)))  # stream order
    stream = measure(n)
    tp.block_order = order
    print(f"{n} micro-batches of the reference stream: useful share of the computed tile entries "
          f"{stream:.3f} in stream order, {packed:.3f} in block_order; computed tiles x {stream / packed:.3f}")
