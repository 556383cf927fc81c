"""Shared helpers for the CPU test suite of train_plm.py.

Puts the repository root on sys.path (so `import train_plm` works from any working directory) and writes
small token shards in the published format: a 256 x int32 little-endian header
[20240520 (magic), 1 (version), n_tokens, 0, ...] followed by n_tokens uint8 token ids, each sequence
stored as <cls>(0) residues (ids 4-28) <eos>(2).
"""
import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# A test run must never think it was launched by torchrun (train_plm.main looks at RANK).
for _k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
    os.environ.pop(_k, None)

MAGIC, VERSION, HEADER_INTS = 20240520, 1, 256
CLS, PAD, EOS, MASK = 0, 1, 2, 32


def shard_bytes(tokens, magic=MAGIC, version=VERSION, n_tokens=None):
    """Header + tokens as bytes; n_tokens defaults to len(tokens) (override it to corrupt the header)."""
    tokens = np.asarray(tokens, dtype=np.uint8)
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[:3] = magic, version, len(tokens) if n_tokens is None else n_tokens
    return header.tobytes() + tokens.tobytes()


def write_tokens(path, tokens, **header):
    path = Path(path)
    path.write_bytes(shard_bytes(tokens, **header))
    return path


def frame(residue_ids):
    """[<cls>, residues..., <eos>] as uint8."""
    return np.concatenate([[CLS], np.asarray(residue_ids, dtype=np.int64), [EOS]]).astype(np.uint8)


def write_sequences(path, seqs):
    """Write a shard holding the framed sequences (each an array of residue ids); returns the path."""
    return write_tokens(path, np.concatenate([frame(s) for s in seqs]) if seqs else np.zeros(0, np.uint8))


def random_sequences(rng, n, min_len=5, max_len=300, low=4, high=29):
    """n random residue arrays (ids in [low, high)) of random lengths (residues only, no specials)."""
    return [rng.integers(low, high, size=int(rng.integers(min_len, max_len + 1))) for _ in range(n)]


@pytest.fixture
def make_shards(tmp_path):
    """make_shards(prefix, list_of_lists_of_residue_arrays) -> list of shard paths (one per inner list)."""

    def make(prefix, groups):
        paths = []
        for j, seqs in enumerate(groups):
            paths.append(str(write_sequences(tmp_path / f"{prefix}_{j:06d}.bin", seqs)))
        return paths

    return make
