"""CPU tests for train_plm.py: tokenizer, shards, distributed packed loader, masking, document-masked
attention, Muon, evaluation metrics, config resolution and a short end-to-end training run.

Run: python -m pytest -q tests/test_train_plm.py      (CPU only; well under a minute on 2 cores)
Needs: torch, numpy, pytest, scikit-learn (requirements-test.txt).
"""
import contextlib
import inspect
import itertools
import json
import math
import os
import re
import subprocess
import sys
import time
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

import train_plm as tp
from conftest import CLS, EOS, MASK, PAD, frame, random_sequences, write_sequences, write_tokens

# Tiny models on a 2-core machine: one intra-op thread avoids oversubscription (a second busy process on
# the machine makes 2-thread OpenMP regions tens of times slower) and keeps results bit-reproducible.
torch.set_num_threads(1)

LN_V = math.log(33)  # cross-entropy of the uniform distribution over the vocabulary (zero-initialised decoder)

ESM2_VOCAB = (["<cls>", "<pad>", "<eos>", "<unk>"] + list("LAGVSERTIDPKQNFYMHWC") + list("XBUZO")
              + [".", "-", "<null_1>", "<mask>"])
RESIDUE_LETTERS = "LAGVSERTIDPKQNFYMHWCXBUZO"

TINY = ["--num_layers", "4", "--model_dim", "64", "--num_heads", "2", "--mlp_dim", "128",
        "--num_value_embeds", "2", "--tokens_per_micro_batch", "256", "--max_length", "128"]
FP8_DIMS = ["--model_dim", "128", "--mlp_dim", "512"]  # the smallest widths --fp8 true takes (its tiles, blocks)


def cfg_of(*args):
    return tp.parse_config([str(a) for a in args], has_gpu=False)


def perturbed_model(*extra, seed=0, std=0.1):
    """A tiny float32 ProteinLM whose weights (incl. the zero-initialised out/proj/decoder) are all randomised,
    so that every block and the head really depend on their inputs."""
    cfg = cfg_of(*TINY, *extra)
    torch.manual_seed(seed)
    model = tp.ProteinLM(cfg).float().eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(std * torch.randn(p.shape, generator=g))
    return model


def split_at_starts(tokens, starts, end):
    """Pieces of tokens[:end] between consecutive True entries of starts."""
    idx = list(np.flatnonzero(np.asarray(starts[:end]))) + [end]
    return [np.asarray(tokens[a:b]) for a, b in zip(idx[:-1], idx[1:])]


# ==========================================================================================================
# 1. Tokenizer


def test_vocabulary_has_the_fixed_esm2_ids():
    assert tp.VOCAB == ESM2_VOCAB
    assert tp.V == 33
    assert {t: tp.TOKEN_ID[t] for t in ESM2_VOCAB} == {t: i for i, t in enumerate(ESM2_VOCAB)}
    assert (tp.CLS, tp.PAD, tp.EOS, tp.UNK, tp.MASK) == (0, 1, 2, 3, 32)
    assert [tp.TOKEN_ID[c] for c in "LAGVSERTIDPKQNFYMHWC"] == list(range(4, 24))
    assert [tp.TOKEN_ID[c] for c in "XBUZO"] == list(range(24, 29))
    assert list(tp.CANONICAL) == list(range(4, 24)) and list(tp.RESIDUES) == list(range(4, 29))


def test_encode_known_ids():
    ids = tp.encode("MKV")
    assert ids.dtype == np.uint8
    assert ids.tolist() == [0, 20, 15, 7, 2]
    assert tp.encode("MKV", add_special=False).tolist() == [20, 15, 7]
    assert tp.encode("").tolist() == [0, 2]
    assert tp.encode("LAGVSERTIDPKQNFYMHWCXBUZO.-", add_special=False).tolist() == list(range(4, 31))


def test_encode_reads_angle_bracket_tokens_whole():
    assert tp.encode("MK<mask>V").tolist() == [0, 20, 15, 32, 7, 2]
    assert tp.encode("<mask><mask>", add_special=False).tolist() == [32, 32]
    assert tp.encode("A<unk>C<null_1><pad>", add_special=False).tolist() == [5, 3, 23, 31, 1]


def test_encode_accepts_lower_case():
    assert tp.encode("mkv").tolist() == [0, 20, 15, 7, 2]
    assert tp.encode("mKv<mask>w").tolist() == tp.encode("MKV<mask>W").tolist()


@pytest.mark.parametrize("bad", ["MKJV", "MK V", "MK*", "MK1", "MK<mas", "MK<foo>V", "MK<MASK>", "MKV>"])
def test_encode_rejects_characters_outside_the_vocabulary(bad):
    with pytest.raises(ValueError):
        tp.encode(bad)


def test_encode_error_names_character_and_position():
    """Positions are 1-based, as data/prepare.py reports them."""
    with pytest.raises(ValueError, match=r"'J'.*position 3 "):
        tp.encode("MKJV")


def test_decode_encode_round_trip_random_proteins():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(0, 60))
        parts = [RESIDUE_LETTERS[i] for i in rng.integers(0, len(RESIDUE_LETTERS), n)]
        for j in rng.integers(0, n + 1, int(rng.integers(0, 3))):  # a few <mask> anywhere
            parts.insert(int(j), "<mask>")
        s = "".join(parts)
        assert tp.decode(tp.encode(s)) == s
        assert tp.decode(tp.encode(s.lower())) == s  # upper-cased on the way in
        assert tp.decode(torch.from_numpy(tp.encode(s).astype(np.int64))) == s  # tensors accepted
    assert tp.decode(tp.encode("MKV"), skip_special=False) == "<cls>MKV<eos>"
    assert tp.decode([0, 20, 1, 1, 2]) == "M"  # <cls>, <pad>, <eos> dropped


# ==========================================================================================================
# 2. Shards


def test_open_shard_round_trip(tmp_path):
    toks = np.random.default_rng(1).integers(0, 33, 10_000).astype(np.uint8)
    path = write_tokens(tmp_path / "a.bin", toks)
    m = tp.open_shard(str(path))
    assert isinstance(m, np.memmap) and m.dtype == np.uint8 and m.shape == (10_000,)
    np.testing.assert_array_equal(np.asarray(m), toks)


@pytest.mark.parametrize("kind", ["magic", "version", "count_larger", "count_smaller", "short", "tiny", "folder"])
def test_open_shard_rejects_corrupt_shards_naming_the_file(tmp_path, kind):
    toks = np.arange(100, dtype=np.uint8) % 29
    path = tmp_path / f"corrupt_{kind}.bin"
    if kind == "magic":
        write_tokens(path, toks, magic=12345)
    elif kind == "version":
        write_tokens(path, toks, version=2)
    elif kind == "count_larger":
        write_tokens(path, toks, n_tokens=101)
    elif kind == "count_smaller":
        write_tokens(path, toks, n_tokens=99)
    elif kind == "short":  # shorter than the 1024-byte header
        path.write_bytes(np.array([tp.MAGIC, 1, 0], "<i4").tobytes() + bytes(100))
    elif kind == "folder":  # a folder given where a glob of shards belongs
        path.mkdir()
    else:
        path.write_bytes(b"")
    with pytest.raises(ValueError) as e:
        tp.open_shard(str(path))
    assert str(path) in str(e.value)


def test_index_sequences_finds_every_sequence(tmp_path):
    rng = np.random.default_rng(2)
    groups = [random_sequences(rng, 7, 0, 50), random_sequences(rng, 1), random_sequences(rng, 12, 1, 400)]
    paths = [str(write_sequences(tmp_path / f"s_{k}.bin", g)) for k, g in enumerate(groups)]
    shards, seqs = tp.index_sequences(paths)
    expected = []
    for k, g in enumerate(groups):
        pos = 0
        for s in g:
            expected.append((k, pos, pos + len(s) + 2))
            pos += len(s) + 2
    assert seqs.dtype == np.int64 and seqs.shape == (len(expected), 3)
    assert [tuple(r) for r in seqs.tolist()] == expected
    flat = [s for g in groups for s in g]
    for (k, a, b), s in zip(seqs, flat):
        np.testing.assert_array_equal(np.asarray(shards[k][a:b]), frame(s))
    # scanning in small chunks (sequence starts across chunk boundaries) gives the same index
    _, seqs_small = tp.index_sequences(paths, chunk=7)
    np.testing.assert_array_equal(seqs_small, seqs)


@pytest.mark.parametrize("tokens", [[5, 6, 2, 0, 4, 2], [0, 4, 33, 2], [0, 4, 2, 0, 255, 2], [], [0, 4, 5, 0, 6, 2],
                                    [0, 4, 2, 0, 6]],
                         ids=["no_leading_cls", "id_33", "id_255", "empty", "no_eos_inside", "no_final_eos"])
def test_index_sequences_rejects_bad_shards_naming_the_file(tmp_path, tokens):
    good = write_sequences(tmp_path / "good.bin", [[4, 5, 6]])
    bad = write_tokens(tmp_path / "bad.bin", np.array(tokens, np.uint8))
    with pytest.raises(ValueError) as e:
        tp.index_sequences([str(good), str(bad)], chunk=2)
    assert str(bad) in str(e.value)


def test_resolve_files_sorted_and_missing(tmp_path):
    for name in ("x_002.bin", "x_000.bin", "x_001.bin"):
        (tmp_path / name).write_bytes(b"")
    assert tp.resolve_files(str(tmp_path / "x_*.bin"), "train") == [str(tmp_path / f"x_00{i}.bin") for i in range(3)]
    with pytest.raises(FileNotFoundError, match="valid"):
        tp.resolve_files(str(tmp_path / "nothing_*.bin"), "valid")


# ==========================================================================================================
# 3. Distributed packed loader: one global stream of micro-batches, micro-batch g on rank g % world_size


LOADER_ARGS = ["--tokens_per_micro_batch", "1024", "--max_length", "256"]
LOADER_SEED = 7
CPU = torch.device("cpu")


def _take(stream, n):
    """The first n items of a batches() generator, arrays copied."""
    return [(t.copy(), s.copy(), *rest) for t, s, *rest in itertools.islice(stream, n)]


def _real(tokens):
    """Real (non-padding) tokens of a packed micro-batch: sequences never hold <pad>."""
    return int((np.asarray(tokens) != PAD).sum())


def _first_pass(loader):
    """World size 1: the micro-batches of pass 0 (the last one ends at position (0, n_seqs, its g + 1))."""
    out = []
    for item in loader.batches():
        out.append((item[0].copy(), item[1].copy(), *item[2:]))
        if item[5][:2] == (0, len(loader.seqs)):
            return out
        assert item[5][0] == 0, "pass 0 must end at position (0, n_seqs, g)"


def _pass_sizes(paths, cfg, seed, passes):
    """Micro-batches per pass of the world-size-1 stream, for the first `passes` passes."""
    loader = tp.PackedLoader(paths, cfg, 0, 1, CPU, seed)
    sizes = [0] * passes
    for *_, position in loader.batches():
        sizes[position[0]] += 1
        if position[:2] == (passes - 1, len(loader.seqs)):  # the last micro-batch of the last pass wanted
            return sizes


def _is_window(piece, full):
    piece, full = list(piece), list(full)
    return any(full[a:a + len(piece)] == piece for a in range(len(full) - len(piece) + 1))


def _check_ranks_against_one_stream(paths, cfg, seed, n_groups):
    """World size 2: rank r yields micro-batches g % 2 == r of the world-size-1 stream, with the group's
    totals, and resumes exactly from any of its positions."""
    one = _take(tp.PackedLoader(paths, cfg, 0, 1, CPU, seed).batches(), 2 * n_groups)
    loaders = [tp.PackedLoader(paths, cfg, r, 2, CPU, seed) for r in range(2)]
    ranks = [_take(ld.batches(), n_groups) for ld in loaders]
    for r, got in enumerate(ranks):
        assert [b[2] for b in got] == list(range(r, 2 * n_groups, 2))
        for k, (tokens, starts, g, real, sumsq, position) in enumerate(got):
            np.testing.assert_array_equal(tokens, one[g][0])
            np.testing.assert_array_equal(starts, one[g][1])
            pieces = [p for b in one[2 * k:2 * k + 2] for p in split_at_starts(b[0], b[1], _real(b[0]))]
            assert (real, sumsq) == (sum(len(p) for p in pieces), sum(len(p) ** 2 for p in pieces)), (r, k)
            assert position == one[2 * k + 1][5]  # where the group ends in the one stream
    for r, (ld, got) in enumerate(zip(loaders, ranks)):
        for k in sorted({1, n_groups // 2, n_groups - 1}):
            again = _take(ld.batches(got[k - 1][5]), n_groups - k)
            for want, have in zip(got[k:], again):
                np.testing.assert_array_equal(have[0], want[0])
                np.testing.assert_array_equal(have[1], want[1])
                assert have[2:] == want[2:]
    return ranks


def _dist_worker(rank, world_size, paths, store_file, out_dir):
    """One rank of the 2-process test (spawned): its micro-batches of two passes, and a distributed evaluate."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store_file}", rank=rank, world_size=world_size)
    try:
        cfg = tp.parse_config(LOADER_ARGS, has_gpu=False)
        loader = tp.PackedLoader(paths, cfg, rank, world_size, CPU, LOADER_SEED)
        groups = sum(_pass_sizes(paths, cfg, LOADER_SEED, 2)) // world_size
        batches = [dict(g=g, real=real, pieces=[p.tolist() for p in split_at_starts(t, s, _real(t))])
                   for t, s, g, real, _, _ in _take(loader.batches(), groups)]
        # distributed evaluation of a fixed model on an odd number of batches (one rank gets an all-pad batch)
        ecfg = tp.parse_config(["--tokens_per_micro_batch", "512", "--max_length", "256"], has_gpu=False)
        valid, _ = tp.eval_batches(paths, ecfg)
        model = perturbed_model(seed=3)
        val = tp.evaluate(model, valid, CPU, rank, world_size, contextlib.nullcontext())
        res = dict(batches=batches, n_eval_batches=len(valid), val=val)
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(res))
    finally:
        dist.destroy_process_group()


@pytest.fixture
def loader_shards(tmp_path):
    rng = np.random.default_rng(5)
    groups = [random_sequences(rng, 60, 1, 400), random_sequences(rng, 45, 1, 200), random_sequences(rng, 30)]
    paths = [str(write_sequences(tmp_path / f"d_train_{k:06d}.bin", g)) for k, g in enumerate(groups)]
    return paths, [s for g in groups for s in g]


def test_block_order_ends_sequences_on_block_boundaries_and_saves_attention_tiles():
    assert tp.block_order([]) == []
    # longest first (300); then 212 ends it on 512 = 4 x 128; none ends 640 exactly: the longest left (100);
    # 28 ends it on 640
    assert tp.block_order([100, 28, 300, 212, 5]) == [2, 3, 0, 1, 4]
    rng = np.random.default_rng(0)
    tiles = {"stream": 0, "block_order": 0}
    for _ in range(3):  # micro-batches of 65,536 tokens (the GPU presets'), protein-like lengths (median ~200)
        lengths = []
        while sum(lengths) < 64000:
            lengths.append(int(min(1024, max(8, rng.lognormal(5.3, 0.6)))))
        for name, order in (("stream", range(len(lengths))), ("block_order", tp.block_order(lengths))):
            assert sorted(order) == list(range(len(lengths)))
            starts = torch.zeros(65536, dtype=torch.bool)
            starts[np.cumsum([0] + [lengths[i] for i in order])] = True  # the last start: the padding
            _, lo, hi = tp.document_ranges(*tp.document_ids(starts))
            tiles[name] += int((hi - lo).sum()) // tp.ATTN_BLOCK  # key blocks computed by all query blocks
    assert tiles["block_order"] < 0.9 * tiles["stream"], tiles


def test_two_ranks_split_the_data_disjointly_and_completely(tmp_path, loader_shards):
    paths, flat = loader_shards
    # premise: passes 0 and 1 have an even number of micro-batches (an odd one: test_a_group_may_span_two_passes)
    assert [n % 2 for n in _pass_sizes(paths, cfg_of(*LOADER_ARGS), LOADER_SEED, 2)] == [0, 0]
    out = tmp_path / "out"
    out.mkdir()
    ctx = mp.start_processes(_dist_worker, args=(2, paths, str(tmp_path / "store"), str(out)), nprocs=2,
                             join=False, start_method="spawn")
    deadline = time.time() + 180
    try:
        while not ctx.join(timeout=1):
            assert time.time() < deadline, "distributed workers did not finish in time"
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.terminate()
    r0, r1 = (json.loads((out / f"rank{r}.json").read_text()) for r in range(2))
    n = len(flat)
    for r, res in enumerate((r0, r1)):
        assert [b["g"] for b in res["batches"]] == list(range(r, 2 * len(res["batches"]), 2))
    # both ranks' micro-batches, in global order, hold each pass's permutation exactly once, in consecutive
    # runs, each run packed in block_order: no sequence on two ranks, none skipped; cropped to 256 tokens
    merged = sorted(r0["batches"] + r1["batches"], key=lambda b: b["g"])
    ends = np.cumsum([len(b["pieces"]) for b in merged])
    assert ends[-1] == 2 * n and n in ends  # a pass ends at a micro-batch boundary
    stream = [i for epoch in (0, 1) for i in np.random.default_rng([LOADER_SEED, epoch]).permutation(n)]
    at = 0
    for b in merged:
        run = stream[at:at + len(b["pieces"])]
        at += len(run)
        packed = [run[j] for j in tp.block_order([min(len(frame(flat[i])), 256) for i in run])]
        for i, piece in zip(packed, b["pieces"]):
            full = frame(flat[i]).tolist()
            assert len(piece) == min(len(full), 256) and _is_window(piece, full)
    # every rank counts the real tokens of both ranks' micro-batches (its group's totals)
    per_pass = sum(min(len(s) + 2, 256) for s in flat)
    assert sum(b["real"] for b in r0["batches"]) == sum(b["real"] for b in r1["batches"]) == 2 * per_pass
    # evaluation: the sums reduced over 2 ranks equal one process evaluating everything
    assert r0["n_eval_batches"] % 2 == 1  # one rank ran an all-padding batch
    assert r0["val"] == r1["val"]
    ecfg = cfg_of("--tokens_per_micro_batch", 512, "--max_length", 256)
    valid, _ = tp.eval_batches(paths, ecfg)
    single = tp.evaluate(perturbed_model(seed=3), valid, CPU, 0, 1, contextlib.nullcontext())
    assert r0["val"]["masked_tokens"] == single["masked_tokens"]
    assert r0["val"]["loss"] == pytest.approx(single["loss"], rel=1e-9)
    for k in ("accuracy", "precision", "recall", "f1", "mcc"):
        assert r0["val"][k] == pytest.approx(single[k], abs=1e-12)


def test_packed_batches_hold_the_pass_sequences_in_order_each_in_block_order(loader_shards):
    paths, flat = loader_shards
    T, max_len = 512, 128
    cfg = cfg_of("--tokens_per_micro_batch", T, "--max_length", max_len)
    loader = tp.PackedLoader(paths, cfg, 0, 1, CPU, LOADER_SEED)
    order = np.random.default_rng([LOADER_SEED, 0]).permutation(len(flat))
    batches = _first_pass(loader)
    pieces, packed = [], []  # the sequences as packed; the index (into flat) of each
    length = lambda i: min(len(frame(flat[i])), max_len)  # noqa: E731
    for k, (tokens, starts, g, real, sumsq, position) in enumerate(batches):
        assert tokens.shape == (T,) and tokens.dtype == np.uint8 and starts.shape == (T,) and starts.dtype == bool
        assert g == k and position[2] == k + 1  # one rank: the group is the micro-batch itself
        assert 0 < real <= T and starts[0] and real == _real(tokens)
        assert (tokens[real:] == PAD).all()
        # padding is split into pieces of at most max_length, each marked as a start
        np.testing.assert_array_equal(np.flatnonzero(starts[real:]) + real, np.arange(real, T, max_len))
        got = split_at_starts(tokens, starts, real)
        assert real == sum(len(p) for p in got)  # real token count == sum of the sequence lengths
        assert sumsq == sum(len(p) ** 2 for p in got)
        run = order[len(pieces):len(pieces) + len(got)]  # the next run of the permutation, in block_order
        packed += [run[j] for j in tp.block_order([length(i) for i in run])]
        pieces += got
        if len(pieces) < len(order):  # no batch could have taken the next sequence (greedy packing)
            assert real + length(order[len(pieces)]) > T
    assert len(pieces) == len(order)
    cropped_at = []
    for i, piece in zip(packed, pieces):
        full = frame(flat[i])
        if len(full) <= max_len:
            np.testing.assert_array_equal(piece, full)
            continue
        assert len(piece) == max_len
        hits = [a for a in range(len(full) - max_len + 1) if np.array_equal(full[a:a + max_len], piece)]
        assert hits, "a cropped sequence must be a contiguous window of the original"
        a = hits[0]
        cropped_at.append(a)
        assert (piece[0] == CLS) == (a == 0)  # <cls> only when the window touches the start
        assert (piece[-1] == EOS) == (a + max_len == len(full))  # <eos> only when it touches the end
        assert ((piece == CLS).sum(), (piece == EOS).sum()) == (int(a == 0), int(a + max_len == len(full)))
    assert len(cropped_at) >= 10 and len(set(cropped_at)) > 3  # windows really are random
    # the background thread serves the same batches, as torch tensors, with their global index
    tokens, starts, g = loader.next()
    assert tokens.dtype == torch.int64 and starts.dtype == torch.bool and g == 0
    np.testing.assert_array_equal(tokens.numpy(), batches[0][0].astype(np.int64))
    np.testing.assert_array_equal(starts.numpy(), batches[0][1])
    assert loader.last == (batches[0][3], batches[0][4])
    # resuming from any position reproduces the rest of the stream exactly (what checkpoints rely on)
    n = len(batches)
    first = _take(loader.batches(), n + 3)  # crosses into the second pass
    for i in (1, n - 1, n):
        again = loader.batches(first[i - 1][5])
        for want in first[i:]:
            got = next(again)
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_array_equal(got[1], want[1])
            assert got[2:] == want[2:]
    assert first[n - 1][5] == (0, len(flat), n)  # the last batch of pass 0 points past its permutation
    # pass 1 is padded apart from pass 0 and starts a new permutation
    order1 = np.random.default_rng([LOADER_SEED, 1]).permutation(len(flat))
    assert not (order1 == order).all()
    t, s = first[n][0], first[n][1]
    nxt = split_at_starts(t, s, _real(t))
    run = order1[:len(nxt)]
    assert all(_is_window(p, frame(flat[run[j]])) for p, j in zip(nxt, tp.block_order([length(i) for i in run])))


def test_two_ranks_take_alternate_micro_batches_of_the_one_stream(loader_shards):
    paths, _ = loader_shards
    cfg = cfg_of(*LOADER_ARGS)
    sizes = _pass_sizes(paths, cfg, LOADER_SEED, 2)
    assert [n % 2 for n in sizes] == [0, 0]  # groups of two micro-batches end with each pass
    ranks = _check_ranks_against_one_stream(paths, cfg, LOADER_SEED, sum(sizes) // 2)
    # next(): rank 1's micro-batches g = 1, 3, ...; loader.last holds the totals of their groups (checked
    # above against the sums over both micro-batches of each group), the same on both ranks
    loader = tp.PackedLoader(paths, cfg, 1, 2, CPU, LOADER_SEED)
    for k in range(4):
        tokens, starts, g = loader.next()
        assert g == 2 * k + 1 and tokens.dtype == torch.int64 and starts.dtype == torch.bool
        np.testing.assert_array_equal(tokens.numpy(), ranks[1][k][0].astype(np.int64))
        assert loader.last == (ranks[0][k][3], ranks[0][k][4]) == (ranks[1][k][3], ranks[1][k][4])
        assert loader.position == ranks[1][k][5]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # (the loaders' threads)
@pytest.mark.parametrize("n_seqs", [9, 1])
def test_a_group_may_span_two_passes(tmp_path, n_seqs):
    """Passes of an odd number of micro-batches (9 cropped sequences: 4 + 4 + 1; or a single sequence): every
    other group holds the last micro-batch of one pass and the first of the next."""
    rng = np.random.default_rng(3)
    path = str(write_sequences(tmp_path / "odd_train_000000.bin", random_sequences(rng, n_seqs, 130, 200)))
    cfg = cfg_of("--tokens_per_micro_batch", 512, "--max_length", 128)
    assert _pass_sizes([path], cfg, 0, 1)[0] % 2 == 1
    _check_ranks_against_one_stream([path], cfg, 0, 6)


# ==========================================================================================================
# 4. Masking


def test_mask_tokens_statistics():
    g = torch.Generator().manual_seed(0)
    n = 200_000
    tokens = torch.randint(4, 29, (n,), generator=g)
    special = torch.rand(n, generator=g) < 0.1
    tokens[special] = torch.tensor([CLS, PAD, EOS])[torch.randint(0, 3, (int(special.sum()),), generator=g)]
    rate = 0.2
    inputs, labels = tp.mask_tokens(tokens.clone(), rate, torch.Generator().manual_seed(1))
    assert inputs.dtype == torch.int64 and labels.dtype == torch.int64 and inputs.shape == tokens.shape

    is_res = (tokens >= 4) & (tokens <= 28)
    sel = labels != -100
    assert not (sel & ~is_res).any()  # <cls>/<eos>/<pad> are never selected ...
    assert torch.equal(inputs[~is_res], tokens[~is_res])  # ... nor changed
    assert torch.equal(inputs[~sel], tokens[~sel])  # nothing unselected changes
    assert torch.equal(labels[sel], tokens[sel])  # labels: the original token where selected, -100 elsewhere

    n_res, n_sel = int(is_res.sum()), int(sel.sum())
    se = math.sqrt(rate * (1 - rate) / n_res)
    assert abs(n_sel / n_res - rate) < 4 * se

    s_in, s_tok = inputs[sel], tokens[sel]
    masked = s_in == MASK
    same = s_in == s_tok
    changed = ~masked & ~same
    # random replacements are canonical amino acids only
    assert ((s_in[changed] >= 4) & (s_in[changed] <= 23)).all()
    assert set(s_in[~masked].tolist()) <= set(range(4, 29))
    # expected fractions: 80% <mask>; 10% random canonical (equal to the original with prob 1/20 when the
    # original is canonical); 10% unchanged
    canon = ((s_tok >= 4) & (s_tok <= 23)).double()
    p_mask = torch.full_like(canon, 0.8)
    p_same = 0.1 + 0.1 * canon / 20
    p_changed = 0.1 - 0.1 * canon / 20
    for obs, p in ((masked, p_mask), (same, p_same), (changed, p_changed)):
        expected, var = float(p.sum()), float((p * (1 - p)).sum())
        assert abs(float(obs.sum()) - expected) < 4 * math.sqrt(var), (float(obs.sum()), expected)
    # the random replacements are spread over all 20 canonical ids
    counts = torch.bincount(s_in[changed], minlength=24)[4:24].double()
    assert (counts > 0).all()
    assert (counts - counts.mean()).abs().max() < 5 * counts.mean().sqrt()

    # seeded: same generator seed -> same masks; different seed -> different
    again = tp.mask_tokens(tokens.clone(), rate, torch.Generator().manual_seed(1))
    other = tp.mask_tokens(tokens.clone(), rate, torch.Generator().manual_seed(2))
    assert torch.equal(again[0], inputs) and torch.equal(again[1], labels)
    assert not torch.equal(other[1], labels)


def test_mask_tokens_rate_extremes():
    tokens = torch.tensor([0, 4, 5, 23, 24, 28, 2, 1, 1])
    inp, lab = tp.mask_tokens(tokens, 0.0, torch.Generator().manual_seed(0))
    assert torch.equal(inp, tokens) and (lab == -100).all()
    inp, lab = tp.mask_tokens(tokens, 1.0, torch.Generator().manual_seed(0))
    assert torch.equal(lab != -100, torch.tensor([0, 1, 1, 1, 1, 1, 0, 0, 0], dtype=torch.bool))


def test_prediction_capacity_is_8_standard_deviations_above_the_mean_in_rows_of_128():
    for tokens, rate in ((65536, 0.2), (8192, 0.2), (256, 0.2), (65536, 0.05), (4096, 0.15)):
        c = tp.prediction_capacity(tokens, rate)
        bound = rate * tokens + 8 * math.sqrt(tokens * rate * (1 - rate))
        assert c % 128 == 0 and bound <= c < bound + 128 and c < tokens, (tokens, rate, c)
    assert tp.prediction_capacity(65536, 0.2) == 13952  # 21.3% of the reference preset's micro-batch
    assert tp.prediction_capacity(256, 0.5) is None and tp.prediction_capacity(1024, 1.0) is None


def test_prediction_rows_hold_every_scored_position_first_then_distinct_fill():
    g = torch.Generator().manual_seed(0)
    labels = torch.where(torch.rand(1000, generator=g) < 0.2, 7, -100)
    scored = (labels != -100).nonzero()[:, 0]
    rows, lost = tp.prediction_rows(labels, 256)
    assert rows.shape == (256,) and int(lost) == 0
    assert torch.equal(rows[:len(scored)], scored)  # in order
    assert (labels[rows[len(scored):]] == -100).all() and len(set(rows.tolist())) == 256
    assert torch.equal(rows[len(scored):], (labels == -100).nonzero()[:256 - len(scored), 0])
    rows, lost = tp.prediction_rows(labels, 128)  # fewer rows than scored positions: counted, not hidden
    assert int(lost) == len(scored) - 128 and torch.equal(rows, scored[:128])


def test_sparse_prediction_gives_the_loss_and_gradients_of_the_whole_head():
    """forward with rows (the last block after its attention, and the head, at the scored rows only) is the
    same function of the weights as without: the loss and every gradient, to float32 rounding."""
    model = perturbed_model().train()
    T = 256
    g = torch.Generator().manual_seed(3)
    tokens = torch.randint(4, 24, (T,), generator=g)
    starts = torch.zeros(T, dtype=torch.bool)
    starts[[0, 90, 200]] = True
    tokens[starts] = CLS
    inputs, labels = tp.mask_tokens(tokens, 0.2, g)
    rows, lost = tp.prediction_rows(labels, tp.prediction_capacity(T, 0.2))
    assert int(lost) == 0 and len(rows) < T
    params = list(model.parameters())
    full = model(inputs, starts, labels)
    sparse = model(inputs, starts, labels, None, rows)
    assert torch.allclose(full, sparse, rtol=1e-6)
    for a, b in zip(torch.autograd.grad(full, params), torch.autograd.grad(sparse, params)):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6 * float(a.abs().max()))
    weights = torch.rand(T, generator=g) * (labels != -100)  # weights (masked diffusion) are indexed too
    assert torch.allclose(model(inputs, starts, labels, weights), model(inputs, starts, labels, weights, rows),
                          rtol=1e-6)


def test_flops_per_token_counts_the_sparse_rows_at_their_fraction_and_not_block_0s_qkv_table():
    model = perturbed_model()
    c, L = model.cfg, model.cfg.num_layers
    after = (c.model_dim * c.model_dim + 2 * c.model_dim * c.mlp_dim  # the last block's out, fc, proj
             + c.model_dim * c.model_dim + tp.V * c.model_dim)  # the head's dense and decoder
    full = tp.flops_per_token(model, 100.0)
    assert full == 6 * (model.matmul_params() - 3 * c.model_dim ** 2) + 12 * L * c.model_dim * 100.0
    assert tp.flops_per_token(model, 100.0, 0.25) == pytest.approx(full - 6 * 0.75 * after)


def test_block_0_on_the_token_table_equals_block_0_on_its_rows():
    """Block 0's input is x0 = x0_table[tokens], so Block.attend(None, ...) runs its mix, norm and qkv product on
    the V-row table and looks the rows up: the same output, and the same gradients for every parameter of the
    half and for the embedding, as attend on the (T, D) rows themselves."""
    model = perturbed_model()
    block = model.blocks[0]
    g = torch.Generator().manual_seed(3)
    tokens = torch.randint(0, tp.V, (256,), generator=g)
    starts = torch.zeros(256, dtype=torch.bool)
    starts[[0, 37, 150]] = True
    mask, cos, sin = model.attention_inputs(starts)
    x0_table, ve_tables = model.embed_inputs(tokens)
    params = [*block.attn.parameters(), block.lambdas, model.embed.weight]  # not the MLP: attend's half only
    outs = [block.attend(x, tokens, x0_table, ve_tables[0], cos, sin, mask)
            for x in (None, tp.GatherRows.apply(x0_table, tokens))]
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-6)
    w = torch.randn(outs[0].shape, generator=g)
    for a, b in zip(*(torch.autograd.grad((o * w).sum(), params, retain_graph=True) for o in outs)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * float(b.abs().max()))


def test_mask_tokens_without_80_10_10_masks_every_selected_residue():
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(4, 29, (50_000,), generator=g)
    tokens[torch.rand(50_000, generator=g) < 0.1] = torch.tensor(CLS)
    tokens[::97], tokens[1::89] = EOS, PAD
    inputs, labels = tp.mask_tokens(tokens.clone(), 0.3, torch.Generator().manual_seed(1), bert=False)
    assert inputs.dtype == torch.int64 and labels.dtype == torch.int64
    sel = labels != -100
    is_res = (tokens >= 4) & (tokens <= 28)
    assert not (sel & ~is_res).any()
    assert (inputs[sel] == MASK).all()  # every selected residue becomes <mask>: no random, none kept
    assert torch.equal(inputs[~sel], tokens[~sel])
    assert torch.equal(labels[sel], tokens[sel])
    n_res = int(is_res.sum())
    assert abs(int(sel.sum()) / n_res - 0.3) < 4 * math.sqrt(0.3 * 0.7 / n_res)
    # the same positions as the 80/10/10 variant under the same seed (selection draws first)
    bert_inputs, bert_labels = tp.mask_tokens(tokens.clone(), 0.3, torch.Generator().manual_seed(1))
    assert torch.equal(bert_labels, labels)
    assert (bert_inputs[sel] != MASK).any()
    # the setting: on by default (train() passing it on: test_training_masks_are_seeded_per_global_micro_batch)
    assert tp.parse_config([], has_gpu=False).mlm_80_10_10 is True
    assert tp.parse_config(["--mlm_80_10_10", "false"], has_gpu=False).mlm_80_10_10 is False


# ==========================================================================================================
# 5. Attention stays inside each sequence


def _packed_row(seqs, T):
    tokens = torch.full((T,), PAD, dtype=torch.int64)
    starts = torch.zeros(T, dtype=torch.bool)
    pos, spans = 0, []
    for s in seqs:
        tokens[pos:pos + len(s)] = torch.as_tensor(s)
        starts[pos] = True
        spans.append((pos, pos + len(s)))
        pos += len(s)
    starts[pos::128] = True
    return tokens, starts, spans


QKV_PREP_CHECK = r"""
import sys, torch
sys.path.insert(0, sys.argv[1])
import train_plm as tp
torch.manual_seed(0)
T, H, hd, V = 75, 3, 16, 33  # T not a multiple of the kernel's token block: its masked tail is exercised
worst = {}
for has_ve in (True, False):
    qkv = (3 * torch.randn(T, 3 * H * hd)).bfloat16().requires_grad_()
    table = torch.randn(V, H * hd, dtype=torch.bfloat16, requires_grad=True)  # a value-embedding table
    tokens = torch.randint(0, V, (T,))
    tokens[:3] = torch.tensor([0, V - 1, 5])
    lam = torch.tensor([0.7, -0.4], requires_grad=True) if has_ve else None
    angles = torch.rand(T, 1, hd // 2) * 6
    cos, sin = angles.cos(), angles.sin()
    grads = [torch.randn(T, H, hd, dtype=torch.bfloat16) for _ in range(3)]
    inputs = [qkv] + ([table, lam] if has_ve else [])
    ve = table.float()[tokens] if has_ve else None  # the lookup as plain indexing
    want = tp.qkv_prep_reference(qkv.float(), ve, lam, cos, sin, H)
    want_grads = torch.autograd.grad(want, inputs, [g.float() for g in grads])
    op = getattr(torch.ops, tp.OPS).qkv_prep
    got = op(qkv, tokens, table if has_ve else None, lam if has_ve else torch.ones(2), cos.squeeze(1),
             sin.squeeze(1), H)
    got_grads = torch.autograd.grad(got, inputs, grads)
    names = ["q", "k", "v", "dqkv", "dtable", "dlam"]
    for name, a, b in zip(names, list(got) + list(got_grads), list(want) + list(want_grads)):
        assert a.shape == b.shape and a.dtype == (torch.float32 if name == "dlam" else torch.bfloat16), name
        err = float((a.float() - b.float()).abs().max() / b.float().abs().max())
        worst[f"{name}{'' if has_ve else '_no_ve'}"] = err
print(worst)
assert max(worst.values()) < 0.02, worst
"""


def _run_under_triton_interpreter(tmp_path, source):
    """Runs a check script (argv[1]: train_plm's folder) in a fresh process with TRITON_INTERPRET=1, which Triton
    reads when the kernels are defined; fails the test with its output if the script fails."""
    pytest.importorskip("triton")
    script = tmp_path / "check.py"
    script.write_text(source)
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    run = subprocess.run([sys.executable, str(script), str(Path(tp.__file__).parent)], env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr


def test_fused_qkv_prep_kernel_matches_pytorch(tmp_path):
    """The GPU path's fused QK-norm + RoPE + value-embedding kernels (forward and backward), run by Triton's
    CPU interpreter, against qkv_prep_reference in float32: outputs and gradients within bf16 rounding."""
    _run_under_triton_interpreter(tmp_path, QKV_PREP_CHECK)


def test_qkv_prep_uses_the_reference_path_on_cpu():
    """On CPU the model calls plain PyTorch (no Triton), whatever is installed, with the value embedding
    looked up by GatherRows."""
    T, H, hd, V = 8, 2, 8, 5
    qkv, table, tokens = torch.randn(T, 3 * H * hd), torch.randn(V, H * hd), torch.randint(0, V, (T,))
    angles = torch.rand(T, 1, hd // 2)
    lam = torch.tensor([0.5, 0.5])
    got = tp.qkv_prep(qkv, tokens, table, lam, angles.cos(), angles.sin(), H)
    want = tp.qkv_prep_reference(qkv, table[tokens], lam, angles.cos(), angles.sin(), H)
    for a, b in zip(got, want):
        assert torch.equal(a, b)


def test_gather_rows_is_a_lookup_whose_gradient_sums_rows_per_token_id():
    """GatherRows = table[idx]; its backward (sum_by_index, a one-hot product padded to 64 rows) equals
    index_add_'s sums, ids that never occur get zero rows; a bf16 gradient gives bf16 sums within bf16 rounding."""
    torch.manual_seed(0)
    V, T, D = 33, 300, 8
    table = torch.randn(V, D, dtype=torch.float64, requires_grad=True)
    idx = torch.randint(0, V - 3, (T,))  # the last 3 ids never occur
    out = tp.GatherRows.apply(table, idx)
    assert torch.equal(out, table[idx])
    g = torch.randn(T, D, dtype=torch.float64)
    (got,) = torch.autograd.grad(out, table, g)
    want = torch.zeros(V, D, dtype=torch.float64).index_add_(0, idx, g)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert not got[V - 3:].any()
    g16 = g.bfloat16()  # the GPU path: bf16 gradients, bf16 sums (rounded once, after an fp32 accumulation)
    want16 = torch.zeros(V, D, dtype=torch.float64).index_add_(0, idx, g16.double())
    got16 = tp.sum_by_index(g16, idx, V)
    assert got16.dtype == torch.bfloat16
    torch.testing.assert_close(got16.double(), want16, rtol=2 ** -8, atol=1e-6)


def test_fp8_rowwise_maps_each_row_maximum_to_e4m3s_largest():
    t = torch.tensor([[0.0, 0.0, 0.0], [1.0, -3.0, 0.5], [1e-6, 2e-6, -4e-6]])
    t8, scale = tp.fp8_rowwise(t)
    assert t8.dtype == torch.float8_e4m3fn and t8.is_contiguous() and scale.shape == (3, 1)
    assert scale.dtype == torch.float32
    assert t8[0].float().eq(0).all()  # an all-zero row stays zero
    assert t8[1, 1].float() == -448 and t8[2, 2].float() == -448  # the largest |value| of a row -> 448
    back = t8.float() * scale
    assert ((back - t)[1:].abs() <= t[1:].abs() / 16 + 1e-30).all()  # e4m3: 3 mantissa bits, rounding <= 1/16
    t8, _ = tp.fp8_rowwise(torch.randn(4, 6).t())  # a transposed (column-major) input comes out row-major
    assert t8.is_contiguous() and t8.shape == (6, 4)


def _rel(a, b):
    return float((a.detach().float() - b).norm() / b.norm())


def test_fp8_linear_is_the_product_to_e4m3_rounding():
    """linear(x, w, fp8_weight(w, "qkv")): the forward in FP8, both gradients bf16 products (the weight's in its
    dtype). Runs torch._scaled_mm on CPU (torch >= 2.13; the GPU runs it in training)."""
    torch.manual_seed(0)
    x = torch.randn(256, 96, dtype=torch.bfloat16, requires_grad=True)
    w = torch.randn(64, 96, requires_grad=True)
    cast = tp.fp8_weight(w, "qkv")
    assert len(cast) == 2 and not any(t.requires_grad for t in cast)
    try:
        y = tp.linear(x, w, cast)
    except (RuntimeError, NotImplementedError) as e:
        pytest.skip(f"torch {torch.__version__} has no CPU torch._scaled_mm: {e}")
    g = torch.randn(256, 64, dtype=torch.bfloat16)
    y.backward(g)
    assert y.dtype == x.grad.dtype == torch.bfloat16 and w.grad.dtype == torch.float32
    assert 0.005 < _rel(y, x.detach().float() @ w.detach().t()) < 0.06  # e4m3's rounding: visible, within 1/16
    assert _rel(x.grad, g.float() @ w.detach()) < 0.005
    assert torch.equal(w.grad, (g.t() @ x.detach()).float())


def test_fp8_blocks_scale_each_128_by_128_block_to_e4m3s_largest():
    torch.manual_seed(0)
    w = torch.randn(2, 256, 384)
    w[1, :128, 128:256] = 0  # an all-zero block stays zero
    w8, scale = tp.fp8_blocks(w)
    assert w8.shape == w.shape and w8.dtype == torch.float8_e4m3fn and w8.is_contiguous()
    assert scale.shape == (2, 2, 3) and scale.dtype == torch.float32
    blocks = w8.float().view(2, 2, 128, 3, 128)
    assert torch.equal(blocks.abs().amax((2, 4))[scale > 1e-20], torch.full_like(scale, 448)[scale > 1e-20])
    assert not blocks[1, 0, :, 1].any()
    back = (blocks * scale[:, :, None, :, None]).view_as(w)
    half_subnormal = (scale[:, :, None, :, None] * 2 ** -10).expand_as(blocks).reshape(w.shape)
    assert ((back - w).abs() <= w.abs() / 16 + half_subnormal).all()  # e4m3: 3 mantissa bits, subnormals 2^-9
    xt8, _ = tp.fp8_blocks(torch.randn(384, 256).t())  # a transposed input comes out contiguous
    assert xt8.is_contiguous()


def test_mlp_fp8_is_the_mlp_to_e4m3_rounding():
    """MLPFP8 (here the op's PyTorch path and dequantised block products, on CPU) against the float MLP
    relu(x @ w_fc.T)² @ w_proj.T: output and every gradient within FP8's rounding; bf16 out and input gradient,
    weight gradients in the weights' dtype; fp8_block_mm is the product of its dequantised operands."""
    torch.manual_seed(0)
    T, D, F_ = 256, 128, 512
    x = torch.randn(T, D, dtype=torch.bfloat16, requires_grad=True)
    w_fc = (torch.randn(F_, D) * D ** -0.5).requires_grad_()
    w_proj = (torch.randn(D, F_) * F_ ** -0.5).requires_grad_()
    casts = tp.fp8_weight(w_fc, "fc") + tp.fp8_weight(w_proj, "proj")
    assert [tuple(t.shape) for t in casts] == [(F_, D), (F_, 1), (D, F_), (1, 4), (D, F_), (1, 4), (F_, D), (F_, 1)]
    y = tp.MLPFP8.apply(x, w_fc, w_proj, *casts)
    g = torch.randn(T, D, dtype=torch.bfloat16)
    y.backward(g)
    assert y.dtype == x.grad.dtype == torch.bfloat16 and w_fc.grad.dtype == w_proj.grad.dtype == torch.float32
    xf, wf, wp = (t.detach().float().requires_grad_() for t in (x, w_fc, w_proj))
    yf = F.relu(xf @ wf.t()).square() @ wp.t()
    yf.backward(g.float())
    for got, want in ((y, yf), (x.grad, xf.grad), (w_fc.grad, wf.grad), (w_proj.grad, wp.grad)):
        assert 0.005 < _rel(got, want.detach()) < 0.08  # e4m3's rounding: visible, within 1/16 per operand
    a8, sa = tp.fp8_1x128(torch.randn(T, F_).bfloat16())
    b8, sb = tp.fp8_blocks(torch.randn(D, F_))
    B = tp.FP8_BLOCK
    a = a8.float() * sa.t().repeat_interleave(B, 1)
    b = b8.float() * sb.repeat_interleave(B, 0).repeat_interleave(B, 1)
    want = a @ b.t()
    assert torch.equal(tp.fp8_block_mm(a8, sa.t(), b8, sb).float(), want.bfloat16().float())


MLP_FP8_CHECK = r"""
import sys, torch
sys.path.insert(0, sys.argv[1])
import train_plm as tp
torch.manual_seed(0)
M, K, N = 256, 128, 512
x8, xs = tp.fp8_rowwise(torch.randn(M, K))
w8, ws = tp.fp8_rowwise(torch.randn(N, K) * 0.1)
worst = {}
for aux in (None, torch.rand(M, N).bfloat16()):
    name = "forward" if aux is None else "backward"
    y, y8, ys = tp.mlp_fp8_triton(x8, xs, w8, ws, aux)
    want = tp.mlp_fp8_reference(x8, xs, w8, ws, aux)[0].float()
    assert y.dtype == torch.bfloat16 and y8.dtype == torch.float8_e4m3fn and ys.shape == (N // 128, M)
    # the product's fp32 sums in another order: y within one bf16 rounding of the reference
    worst[name + "_y"] = float(((y.float() - want).abs() / (want.abs() + 1e-6)).max())
    # the casts: fp8_1x128's scales of the kernel's own y and, but for the interpreter's rounding, its e4m3 values.
    # Triton's CPU interpreter converts to e4m3 its own way where CUDA rounds to nearest even: a tie may round the
    # other way (one step off), and a value that rounds up into the next binade comes out halved
    c8, cs = tp.fp8_1x128(y)
    worst[name + "_scales"] = float((ys - cs).abs().max())
    got, want8 = y8.float(), c8.float()
    step = 2.0 ** (want8.abs().clamp_min(2 ** -6).log2().floor() - 3)  # e4m3's spacing (3 mantissa bits)
    ok = torch.zeros_like(got, dtype=torch.bool)
    for c in (want8, want8 + step, want8 - step):
        power_of_two = c.abs().log2() == c.abs().log2().round()
        ok |= (got == c) | ((got * 2 == c) & power_of_two)
    worst[name + "_e4m3_other"] = int((~ok).sum())
print(worst)
assert worst["forward_y"] <= 2 ** -7 and worst["backward_y"] <= 2 ** -7, worst
assert worst["forward_scales"] == 0 and worst["backward_scales"] == 0, worst
assert worst["forward_e4m3_other"] == 0 and worst["backward_e4m3_other"] == 0, worst
"""


def test_mlp_fp8_kernel_matches_its_reference(tmp_path):
    """The GPU path's fused FP8 product + ReLU² (forward) / ReLU²-backward kernel with its 1 x 128 e4m3 casts, run
    by Triton's CPU interpreter, against mlp_fp8_reference: the bf16 output within one rounding, the same block
    scales, the same e4m3 values but where the interpreter's own conversion rounds otherwise."""
    _run_under_triton_interpreter(tmp_path, MLP_FP8_CHECK)


def test_fp8_needs_widths_its_tiles_and_blocks_divide():
    assert cfg_of("--fp8", "true", *FP8_DIMS).fp8
    too_small = ["--tokens_per_micro_batch", "320", "--max_length", "64"]
    for flags in (["--model_dim", "64"], ["--mlp_dim", "384"], too_small):
        with pytest.raises(SystemExit):
            cfg_of(*flags, "--fp8", "true")
        cfg_of(*flags)  # bf16 takes them


def test_fp8_is_active_only_on_cuda_with_gradients():
    """FP8 runs in training on CUDA; evaluation and inference (no gradients) and CPU stay in bf16 / fp32: a model
    built with fp8 computes bit-identically to one without on CPU."""
    gpu_like, cpu = types.SimpleNamespace(is_cuda=True), torch.zeros(1)
    assert tp.fp8_active(True, gpu_like) and not tp.fp8_active(False, gpu_like) and not tp.fp8_active(True, cpu)
    with torch.no_grad():
        assert not tp.fp8_active(True, gpu_like)
    plain, with_fp8 = perturbed_model(*FP8_DIMS), perturbed_model(*FP8_DIMS, "--fp8", "true")
    rng = np.random.default_rng(0)
    tokens, starts, _ = _packed_row([frame(rng.integers(4, 24, n)) for n in (40, 70)], 128)
    assert torch.equal(plain(tokens, starts), with_fp8(tokens, starts))


@pytest.mark.parametrize("fp8", [False, True])
def test_blocks_run_the_documented_products_in_fp8(monkeypatch, fp8):
    """With FP8 active: the qkv product through linear() with its FP8 copy (forward only) and the MLP as MLPFP8,
    each with its own block's weight copies (fp8_weight's, from fp8_casts); block 0's qkv product runs on the
    token table in bf16, not through linear(), nor does the attention output product; no gradients: everything
    bf16. Regions run one block's MLP, then the next block's qkv product."""
    calls = []

    def record(x, w, cast=None):
        if cast is not None:  # this very weight's copies
            assert all(torch.equal(a.float(), b.float()) for a, b in zip(cast, tp.fp8_weight(w, "qkv")))
        calls.append(("linear", tuple(w.shape), cast is not None))
        return F.linear(x, w)

    class RecordMLP:
        @staticmethod
        def apply(x, w_fc, w_proj, *casts):
            want = tp.fp8_weight(w_fc, "fc") + tp.fp8_weight(w_proj, "proj")
            assert len(casts) == len(want) and all(torch.equal(a.float(), b.float()) for a, b in zip(casts, want))
            calls.append(("MLPFP8", tuple(w_fc.shape), True))
            return F.linear(F.relu(F.linear(x.float(), w_fc)).square(), w_proj)
    monkeypatch.setattr(tp, "linear", record)
    monkeypatch.setattr(tp, "MLPFP8", RecordMLP)
    monkeypatch.setattr(tp, "fp8_active", lambda enabled, x: bool(enabled) and torch.is_grad_enabled())  # CPU as GPU
    model = perturbed_model(*FP8_DIMS, "--fp8", str(fp8).lower())
    tokens, starts, _ = _packed_row([frame(np.arange(4, 24))], 32)
    model(tokens, starts)
    D, H, L = model.cfg.model_dim, model.cfg.mlp_dim, model.cfg.num_layers
    mlp = [("MLPFP8", (H, D), True)] if fp8 else []
    assert calls == (mlp + [("linear", (3 * D, D), fp8)]) * (L - 1) + mlp
    calls.clear()
    with torch.no_grad():
        model(tokens, starts)
    assert calls == [("linear", (3 * D, D), False)] * (L - 1)


def test_fp8_casts_are_each_blocks_weight_copies_cached_until_a_weight_changes():
    """fp8_casts: per block, fp8_weight of its qkv, fc and proj weights (each kind's copies), cast in one batch per
    kind; the same objects again while no weight changed; new values after an optimizer-style in-place update of
    any one weight, and after load_state_dict, written into the same tensors (MicroBatchGraph's CUDA graph reads
    them by address)."""
    model = perturbed_model(*FP8_DIMS, "--num_layers", "3")
    casts = model.fp8_casts()
    assert len(casts) == 3
    for b, (qkv, fc, proj) in zip(model.blocks, casts):
        for cast, w, kind in ((qkv, b.attn.qkv_w.flatten(0, 1), "qkv"), (fc, b.mlp.fc.weight, "fc"),
                              (proj, b.mlp.proj.weight, "proj")):
            want = tp.fp8_weight(w, kind)
            assert len(cast) == len(want) and all(a.shape == c.shape and a.dtype == c.dtype and
                                                  torch.equal(a.float(), c.float()) for a, c in zip(cast, want))
    assert model.fp8_casts() is casts  # nothing changed: the cache
    before = [[[t.clone() for t in kind] for kind in block] for block in casts]
    ptrs = [t.data_ptr() for block in casts for kind in block for t in kind]
    with torch.no_grad():
        torch._foreach_add_([model.blocks[1].mlp.proj.weight], [torch.ones_like(model.blocks[1].mlp.proj.weight)])
    again = model.fp8_casts()
    assert [t.data_ptr() for block in again for kind in block for t in kind] == ptrs  # refreshed in place
    assert not torch.equal(again[1][2][0].float(), before[1][2][0].float())  # the changed weight's copy is new
    want = tp.fp8_weight(model.blocks[1].mlp.proj.weight, "proj")
    assert all(torch.equal(a.float(), c.float()) for a, c in zip(again[1][2], want))
    assert all(torch.equal(a.float(), c.float()) for i in (0, 2) for kind in range(3)  # the others' are equal
               for a, c in zip(again[i][kind], before[i][kind]))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["blocks.0.attn.qkv_w"] *= 2
    model.load_state_dict(state)
    want = tp.fp8_weight(state["blocks.0.attn.qkv_w"].flatten(0, 1), "qkv")[0]
    assert torch.equal(model.fp8_casts()[0][0][0].float(), want.float())


def test_fp8_is_refused_without_an_fp8_gpu(monkeypatch):
    """--fp8 true needs compute capability 8.9+ and an FP8 product that runs (fp8_probe): a clear stop instead
    of a failing first training step."""
    assert "this machine has none" in tp.fp8_refusal(torch.device("cpu"))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "Some GPU")
    monkeypatch.setattr(tp, "fp8_probe", lambda device: None)
    for cc, refused in (((8, 0), True), ((8, 6), True), ((8, 9), False), ((9, 0), False), ((12, 0), False)):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None, cc=cc: cc)
        message = tp.fp8_refusal(torch.device("cuda", 0))
        assert (message is not None) == refused
        if refused:
            assert f"Some GPU is {cc[0]}.{cc[1]}" in message and "--fp8 false" in message
    monkeypatch.setattr(tp, "fp8_probe", lambda device: "CUBLAS_STATUS_NOT_SUPPORTED")  # capability is not enough
    message = tp.fp8_refusal(torch.device("cuda", 0))
    assert "an FP8 product failed: CUBLAS_STATUS_NOT_SUPPORTED" in message
    monkeypatch.undo()
    e4m3 = torch.zeros(16, 16, dtype=torch.float8_e4m3fn)
    try:  # the probe itself: torch 2.13 runs FP8 products on CPU; a build without them reports the error
        torch._scaled_mm(e4m3, e4m3.t(), scale_a=torch.ones(16, 1), scale_b=torch.ones(1, 16), out_dtype=torch.bfloat16)
        assert tp.fp8_probe(torch.device("cpu")) is None
    except (RuntimeError, NotImplementedError):
        assert tp.fp8_probe(torch.device("cpu"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="--fp8 true needs a CUDA GPU with FP8 matrix units"):
        tp.main(["--preset", "cpu", *TINY, *FP8_DIMS, "--steps", "1", "--fp8", "true"])


def test_fp8_is_on_in_the_gpu_presets_only():
    assert tp.parse_config(["--preset", "reference"], has_gpu=True).fp8
    assert tp.parse_config(["--preset", "speedrun"], has_gpu=True).fp8
    assert not tp.parse_config(["--preset", "speedrun", "--fp8", "false"], has_gpu=True).fp8
    assert not tp.parse_config(["--preset", "cpu"], has_gpu=False).fp8


def test_kernel_choices_are_in_the_cache_key_and_left_to_training_to_set():
    """KernelChoices' uuid (all inductor's cache key holds of it) names its choice; the class pickles (torch 2.11
    pickles the config for the key); importing train_plm leaves inductor's config alone (train() sets it)."""
    import pickle
    choices = tp.KernelChoices()
    assert "2048" in choices.uuid()
    assert pickle.loads(pickle.dumps(tp.KernelChoices)) is tp.KernelChoices
    if hasattr(torch._inductor.config, "save_config_portable"):  # torch 2.13: the factory's uuid() is the key
        with torch._inductor.config.patch(inductor_choices_class=tp.KernelChoices):
            assert torch._inductor.config.save_config_portable()["inductor_choices_class"] == choices.uuid()
    probe = "import torch, train_plm; print(torch._inductor.config.inductor_choices_class)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=Path(tp.__file__).parent)
    assert out.stdout.strip() == "None", out.stderr[-2000:]


def test_inductor_deterministic_mode_holds_for_every_compile():
    """Dynamo resets inductor's global deterministic flag after compiling a frame (it restores
    torch.use_deterministic_algorithms, which sets it): a flag set once held only until the first graph break,
    and inductor timed its choices after. INDUCTOR_OPTIONS, passed to torch.compile, holds in every compile."""
    seen = []
    # config.patch, not monkeypatch: pytest >= 9.2 restores an attribute missing from the module's __dict__ by
    # deleting it, which hides an inductor config entry for every later compile
    with torch._inductor.config.patch(deterministic=True, post_grad_custom_post_pass=lambda graph: seen.append(
            torch._inductor.config.deterministic)):
        torch.compile(lambda x: x.cos() * 2, dynamic=False)(torch.ones(3))
        assert seen == [True] and torch._inductor.config.deterministic is False  # the reset this works around
        torch.compile(lambda x: x.sin() * 3, dynamic=False, options=tp.INDUCTOR_OPTIONS)(torch.ones(3))
    assert seen == [True, True]


def test_compile_regions_shares_one_graph_per_kind_of_region_and_matches_eager_gradients(monkeypatch, tmp_path):
    """compile_regions (the trainer's torch.compile on GPU) compiles each region between blocks (ProteinLM.seam)
    on its own; its point is that all regions of one kind share one compiled graph, so cold starts do not grow
    with depth. And the compiled gradients must be eager's: a reused graph computed wrong ones through split
    nested_compile_regions (records/2026-11-30_InductorDeterministic). Inductor on CPU, FP8 products forced on,
    4 blocks: regions 0 (block 0's attention), 1 (no skip), 2 (the middle one: block 2's skip is block 1's output,
    made there), 3 (with block 0's output as its skip), 4 (block 3's MLP) are 5 graphs; sparse prediction's rows
    add regions 3 and 4 at those rows: 7 in all."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))  # a cached graph would not be recompiled
    monkeypatch.setattr(tp, "fp8_active", lambda enabled, x: bool(enabled) and torch.is_grad_enabled())
    cfg = tp.parse_config(["--preset", "cpu", "--num_layers", "4", "--num_value_embeds", "2", "--fp8", "true"],
                          has_gpu=True)
    torch.manual_seed(0)
    model = tp.ProteinLM(cfg)
    with torch.no_grad():  # no zero-initialised output projection or decoder: every gradient is non-zero
        for b in model.blocks:
            tp.init_linear(b.attn.out.weight), tp.init_linear(b.mlp.proj.weight)
        tp.init_linear(model.decoder.weight)
    tokens = torch.randint(4, 24, (256,))
    starts = torch.zeros(256, dtype=torch.bool)
    starts[[0, 100]] = True
    labels = torch.where(torch.arange(256) % 3 == 0, tokens, -100)
    rows = tp.prediction_rows(labels, 128)[0]
    torch._dynamo.reset()
    grads = []
    for compiled in (False, True):  # compile_regions compiles in place: eager first
        if compiled:
            tp.compile_regions(model)
        for extra in ((tokens,), (labels, None, rows)):
            model.zero_grad()
            with torch.autocast("cpu", torch.bfloat16):
                model(tokens, starts, *extra).backward()
            grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
        if compiled:
            assert len(torch._dynamo.eval_frame._debug_get_cache_entry_list(tp.ProteinLM.seam.__code__)) == 7
    for eager, compiled in zip(grads[:2], grads[2:]):
        bad = {n: (float((compiled[n] - g).abs().max()), float(g.abs().max())) for n, g in eager.items()
               if (compiled[n] - g).abs().max() > 0.3 * g.abs().max()}  # rounding: up to ~6% (the scalars)
        assert not bad, bad
    torch._dynamo.reset()


def test_row_reductions_up_to_2048_wide_run_persistent(monkeypatch):
    """Row (INNER) reductions up to 2,048 wide are persistent; wider ones and other shapes get inductor's
    own decision (its default, replaced here by a marker: it needs a graph being compiled)."""
    import sympy
    from torch._inductor.choices import InductorChoices
    from torch._inductor.runtime.hints import ReductionHint

    def features(n, hint):
        return types.SimpleNamespace(reduction_numel=n, get_reduction_hint=lambda: hint)
    monkeypatch.setattr(InductorChoices, "should_use_persistent_reduction", staticmethod(lambda f, c: "inductor"))
    decide = tp.KernelChoices.should_use_persistent_reduction
    assert decide(features(sympy.Integer(1536), ReductionHint.INNER), False) is True
    with torch._inductor.config.patch({"triton.persistent_reductions": False}):  # the user's switch wins
        assert decide(features(sympy.Integer(1536), ReductionHint.INNER), False) == "inductor"
    assert decide(features(2048, ReductionHint.INNER), False) is True
    assert decide(features(sympy.Integer(4096), ReductionHint.INNER), False) == "inductor"
    assert decide(features(sympy.Symbol("s0"), ReductionHint.INNER), False) == "inductor"
    assert decide(features(sympy.Integer(1536), ReductionHint.OUTER), False) == "inductor"


@torch.no_grad()
def test_attention_does_not_leak_across_sequences():
    model = perturbed_model()
    rng = np.random.default_rng(0)
    seqs = [frame(rng.integers(4, 24, n)) for n in (58, 90, 47)]
    tokens, starts, spans = _packed_row(seqs, 256)
    base = model(tokens, starts)
    assert base.shape == (256, 33) and base.dtype == torch.float32 and base.isfinite().all()
    for victim in range(3):
        a, b = spans[victim]
        t2 = tokens.clone()
        t2[a + 1:b - 1] = torch.as_tensor(rng.integers(4, 24, b - a - 2))
        out = model(t2, starts)
        keep = torch.ones(256, dtype=torch.bool)
        keep[a:b] = False
        torch.testing.assert_close(out[keep], base[keep], atol=1e-5, rtol=0)
        assert (out[a:b] - base[a:b]).abs().max() > 1e-2  # the changed sequence's logits did change


@torch.no_grad()
def test_logits_do_not_depend_on_where_a_sequence_is_packed():
    """Positions restart at each sequence (RoPE) and attention is per sequence: a sequence's logits are the
    same alone at offset 0, or after other sequences."""
    model = perturbed_model()
    rng = np.random.default_rng(1)
    s = frame(rng.integers(4, 24, 40))
    alone_t, alone_s, _ = _packed_row([s], 256)
    alone = model(alone_t, alone_s)[:len(s)]
    others = [frame(rng.integers(4, 24, n)) for n in (30, 77)]
    t, st, spans = _packed_row(others + [s], 256)
    a, b = spans[-1]
    torch.testing.assert_close(model(t, st)[a:b], alone, atol=1e-5, rtol=0)


@torch.no_grad()
def test_attention_window():
    model = perturbed_model()
    state = model.state_dict()
    rng = np.random.default_rng(2)
    seqs = [frame(rng.integers(4, 24, n)) for n in (118, 60)]
    tokens, starts, spans = _packed_row(seqs, 256)
    base = model(tokens, starts)
    wide = perturbed_model("--attention_window", 1000)
    wide.load_state_dict(state)
    torch.testing.assert_close(wide(tokens, starts), base, atol=1e-5, rtol=0)  # window >= length == no window

    w, L = 3, model.cfg.num_layers
    local = perturbed_model("--attention_window", w)
    local.load_state_dict(state)
    out = local(tokens, starts)
    assert out.isfinite().all()
    assert (out - base).abs().max() > 1e-3  # the window is applied
    # receptive field: with window w and L layers a token can only influence positions within L*w of it
    p = 60
    t2 = tokens.clone()
    t2[p] = 4 if int(tokens[p]) != 4 else 5
    diff = (local(t2, starts) - out).abs().amax(-1)
    idx = torch.arange(256)
    assert diff[(idx - p).abs() > L * w].max() < 1e-5
    assert diff[p] > 1e-3
    assert diff[(idx - p).abs() > w].max() > 1e-4  # information does travel further through the layers
    # ... whereas without a window the change reaches the whole sequence (and only it)
    full = (model(t2, starts) - base).abs().amax(-1)
    a, b = spans[0]
    assert full[a:b][(idx[a:b] - p).abs() > L * w].min() > 0
    assert full[b:].max() < 1e-5


def test_document_ids_positions_restart_at_each_start():
    starts = torch.zeros(20, dtype=torch.bool)
    starts[[0, 3, 4, 10, 16]] = True
    doc, pos = tp.document_ids(starts)
    assert doc.tolist() == [0] * 3 + [1] + [2] * 6 + [3] * 6 + [4] * 4
    assert pos.tolist() == [0, 1, 2, 0, 0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5, 0, 1, 2, 3]


def test_document_ids_and_ranges_match_a_loop_over_random_rows():
    """document_ids and document_ranges (binary searches over doc) against a plain loop over random 256-token
    rows, dense and sparse in starts, with and without a start at token 0 (tokens before the first start: doc -1,
    positions counted from token 0)."""
    g = torch.Generator().manual_seed(0)
    T, B = 256, tp.ATTN_BLOCK
    for trial in range(12):
        starts = torch.rand(T, generator=g) < (0.01, 0.05, 0.5)[trial % 3]
        starts[0] = trial % 2 == 0
        d, last, want_doc, want_pos = -1, 0, [], []
        for t, s in enumerate(starts.tolist()):
            if s:
                d, last = d + 1, t
            want_doc.append(d)
            want_pos.append(t - last)
        nxt = [t for t in range(1, T) if starts[t]] + [T]
        want_end = [min(s for s in nxt if s > t) for t in range(T)]  # one past each token's sequence
        doc, pos = tp.document_ids(starts)
        assert doc.tolist() == want_doc and pos.tolist() == want_pos, trial
        _, lo, hi = tp.document_ranges(doc, pos)
        assert lo.tolist() == [(b - want_pos[b]) // B * B for b in range(0, T, B)], trial
        assert hi.tolist() == [-(-want_end[b + B - 1] // B) * B for b in range(0, T, B)], trial


def _bounds(starts_idx, T):
    e = [int(i) for i in starts_idx] + [T]
    return list(zip(e[:-1], e[1:]))


def _segments(starts_idx, T):
    """The sequence layout argument of segment_attention: a list of lengths (current API) or, in older
    versions of the file, a list of (start, end) offsets."""
    bounds = _bounds(starts_idx, T)
    if "lengths" in inspect.signature(tp.segment_attention).parameters:
        return [b - a for a, b in bounds]
    return bounds


LAYOUTS = [  # sequence starts in a T = 1024 row: long sequences across blocks, many tiny ones in one block
    [0, 5, 130, 131, 400, 700, 1000],
    [0, 128, 256, 300, 301, 302, 303, 512, 1023],
    [0] + list(range(640, 1024, 19)),
]


@torch.no_grad()
@pytest.mark.parametrize("window", [0, 4, 130])
@pytest.mark.parametrize("layout", range(len(LAYOUTS)))
def test_segment_attention_equals_dense_document_masked_attention(layout, window):
    T, H, d = 1024, 2, 16
    starts = torch.zeros(T, dtype=torch.bool)
    starts[LAYOUTS[layout]] = True
    doc, _ = tp.document_ids(starts)
    g = torch.Generator().manual_seed(layout)
    q, k, v = (torch.randn(1, H, T, d, generator=g) for _ in range(3))
    y_seg = tp.segment_attention(q, k, v, _segments(LAYOUTS[layout], T), window)
    i = torch.arange(T)
    dense = (doc[:, None] == doc[None, :]) & (((i[:, None] - i[None, :]).abs() <= window) if window else True)
    y_dense = F.scaled_dot_product_attention(q, k, v, attn_mask=dense)
    assert y_seg.shape == y_dense.shape == (1, H, T, d)
    torch.testing.assert_close(y_seg, y_dense, atol=1e-5, rtol=0)


@pytest.mark.parametrize("window", [0, 1, 4, 63, 64, 65, 127, 128, 129, 200, 300])
@pytest.mark.parametrize("layout", range(len(LAYOUTS)))
def test_document_ranges_hold_every_allowed_key_and_no_block_without_one(layout, window):
    """document_ranges' [lo[b], hi[b]) for each block b of queries: block-aligned, holds every key some query of
    b may see (same sequence, within the window), and its first and last key blocks each hold one (so no
    range is wider than it must be); doc is document_ids' sequence index."""
    T, B = 1024, tp.ATTN_BLOCK
    starts = torch.zeros(T, dtype=torch.bool)
    starts[LAYOUTS[layout]] = True
    doc, pos = tp.document_ids(starts)
    got_doc, lo, hi = tp.document_ranges(doc, pos, window)
    assert torch.equal(got_doc, doc) and lo.dtype == hi.dtype == torch.int32 and lo.shape == hi.shape == (T // B,)
    i = torch.arange(T)
    allowed = doc[:, None] == doc[None, :]
    if window:
        allowed &= (i[:, None] - i[None, :]).abs() <= window
    for b in range(T // B):
        a, e = int(lo[b]), int(hi[b])
        assert a % B == 0 and e % B == 0 and 0 <= a < e <= T
        keys = allowed[b * B:(b + 1) * B].any(0)
        assert not keys[:a].any() and not keys[e:].any(), b
        assert keys[a:a + B].any() and keys[e - B:e].any(), b


def test_doc_attention_refuses_shapes_its_kernels_would_read_past():
    """The kernels read whole 64-token blocks and power-of-two head rows of contiguous (T, H, d) tensors: other
    inputs are refused before any kernel runs, with the shapes in the message."""
    with pytest.raises(ValueError, match="not a multiple of ATTN_BLOCK"):
        tp.document_ranges(*tp.document_ids(torch.ones(100, dtype=torch.bool)))
    doc, lo, hi = tp.document_ranges(*tp.document_ids(torch.ones(128, dtype=torch.bool)))
    ok = torch.zeros(128, 2, 16)
    for q, k, v in ((torch.zeros(100, 2, 16), torch.zeros(100, 2, 16), torch.zeros(100, 2, 16)),  # T
                    (torch.zeros(128, 2, 48), torch.zeros(128, 2, 48), torch.zeros(128, 2, 48)),  # head size
                    (ok, ok, torch.zeros(128, 16, 2).transpose(1, 2)),  # a strided v
                    (ok, ok, torch.zeros(128, 1, 16))):  # shapes differ
        with pytest.raises(ValueError, match="doc_attention: q, k, v must be contiguous"):
            tp.doc_attention(q, k, v, doc, lo, hi)


DOC_ATTENTION_CHECK = r"""
import sys, torch
sys.path.insert(0, sys.argv[1])
import train_plm as tp
torch.manual_seed(0)
H, hd = 2, 16
worst = {}
for window in (0, 40, 126):  # 126: the 128-token sequence's two blocks need the mask between them, not within each
    lengths = [37, 100, 64, 5, 200, 1, 60, 45, 128]  # 640 tokens: sequences across, inside and on block edges
    T = sum(lengths)
    starts = torch.zeros(T, dtype=torch.bool)
    starts[torch.tensor([0] + lengths[:-1]).cumsum(0)] = True
    mask = tp.document_ranges(*tp.document_ids(starts), window)
    q, k, v = (torch.randn(T, H, hd, requires_grad=True) for _ in range(3))
    go = torch.randn(T, H, hd)
    got = tp.doc_attention(q, k, v, *mask, window)
    got_grads = torch.autograd.grad(got, (q, k, v), go)
    want = tp.segment_attention(*(t.transpose(0, 1)[None] for t in (q, k, v)), lengths, window)[0].transpose(0, 1)
    want_grads = torch.autograd.grad(want, (q, k, v), go)
    for name, a, b in zip(["o", "dq", "dk", "dv"], (got,) + got_grads, (want,) + want_grads):
        assert a.shape == b.shape and a.dtype == b.dtype, name
        worst[f"{name}_window{window}"] = float((a - b).abs().max() / b.abs().max())
print(worst)
assert max(worst.values()) < 1e-4, worst
"""


def test_doc_attention_kernels_match_segment_attention(tmp_path):
    """The GPU path's attention kernels (forward, dQ and dK/dV passes), run by Triton's CPU interpreter in
    float32 (its bf16 tl.dot returned wrong products, Triton 3.9), against segment_attention: outputs and
    gradients, with and without a window; tiles inside one sequence (unmasked) and across sequences."""
    _run_under_triton_interpreter(tmp_path, DOC_ATTENTION_CHECK)


# ==========================================================================================================
# 6. Muon


def _singular_values(X):
    return torch.linalg.svdvals(X.double())


@pytest.mark.parametrize("shape", [(768, 1536), (1536, 768)])
def test_newton_schulz_gaussian(shape):
    G = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    X = tp.newton_schulz(G)
    assert X.shape == G.shape and X.dtype == torch.float32
    s = _singular_values(X)
    assert s.min() > 0.6 and s.max() < 1.2, (s.min(), s.max())


def test_newton_schulz_batch_well_conditioned():
    g = torch.Generator().manual_seed(1)
    mats = []
    for _ in range(3):
        U, _ = torch.linalg.qr(torch.randn(256, 256, generator=g, dtype=torch.float64))
        Vm, _ = torch.linalg.qr(torch.randn(256, 256, generator=g, dtype=torch.float64))
        s = 1 + 9 * torch.rand(256, generator=g, dtype=torch.float64)
        s[0], s[1] = 1.0, 10.0
        mats.append(U @ torch.diag(s) @ Vm.T)
    G = torch.stack(mats).float()
    X = tp.newton_schulz(G)
    assert X.shape == (3, 256, 256)
    for j in range(3):
        s = _singular_values(X[j])
        assert s.min() > 0.6 and s.max() < 1.2, (j, s.min(), s.max())
        # each matrix orthogonalised on its own: same singular vectors as G (polar factor direction)
        Ug, _, Vg = torch.linalg.svd(G[j].double())
        assert torch.dist(Ug.T @ X[j].double() @ Vg.T, torch.diag(torch.diagonal(Ug.T @ X[j].double() @ Vg.T))) < 1e-2


def test_newton_schulz_is_the_quintic_iteration_on_each_matrix():
    """The baddbmm form (sums in the products' epilogues) is X <- a X + (b A + c A A) X, A = X X^T, on each
    matrix of any leading shape, tall ones transposed: against the plain formula, one matrix at a time."""
    g = torch.Generator().manual_seed(2)
    G = torch.randn(2, 3, 40, 24, generator=g)  # tall: orthogonalised as its transpose
    X = tp.newton_schulz(G)
    a, b, c = 3.4445, -4.7750, 2.0315
    for i in range(2):
        for j in range(3):
            Y = G[i, j].T / (G[i, j].norm() + 1e-7)
            for _ in range(5):
                A = Y @ Y.T
                Y = a * Y + (b * A + c * A @ A) @ Y
            torch.testing.assert_close(X[i, j], Y.T, atol=2e-5, rtol=1e-4)


def test_tree_sum_bits_do_not_depend_on_the_split():
    """8 gradients summed by 1, 2, 4 or 8 ranks (rank r holds i = r, r + W, ...; each sums its own, then the W
    results are summed): tree_sum gives the same bits every time; summing in arrival order does not."""
    g = torch.Generator().manual_seed(0)
    parts = [torch.randn(4096, generator=g) * 10 ** torch.randint(-3, 4, (4096,), generator=g) for _ in range(8)]
    sums = []
    for W in (1, 2, 4, 8):
        per_rank = [tp.tree_sum([[parts[i].clone()] for i in range(r, 8, W)])[0] for r in range(W)]
        sums.append(tp.tree_sum([[x] for x in per_rank])[0])
    assert all(torch.equal(sums[0], s) for s in sums[1:])
    arrival = parts[0].clone()
    for x in parts[1:]:
        arrival += x
    assert torch.allclose(arrival, sums[0], atol=1e-2) and not torch.equal(arrival, sums[0])  # only the last bits


def test_make_optimizers_groups():
    model = perturbed_model()
    cfg = model.cfg
    opts, counts = tp.make_optimizers(model, cfg, fused=False)
    adam, muon = opts
    assert isinstance(adam, torch.optim.Adam) and isinstance(muon, tp.Muon)
    named = dict(model.named_parameters())
    by_id = {id(p): n for n, p in named.items()}
    placed = [by_id[id(p)] for o in opts for g in o.param_groups for p in g["params"]]
    assert sorted(placed) == sorted(named)  # every parameter in exactly one group
    muon_names = {by_id[id(p)] for p in muon.param_groups[0]["params"]}
    assert muon_names == {n for n, p in named.items() if n.startswith("blocks.") and p.dim() >= 2}
    assert all(named[n].dim() in (2, 3) for n in muon_names)
    embed, head, scalar = ({by_id[id(p)] for p in g["params"]} for g in adam.param_groups)
    assert embed == {"embed.weight"} | {f"value_embeds.{i}.weight" for i in range(cfg.num_value_embeds)}
    assert head == {"head_dense.weight", "decoder.weight", "decoder.bias"}
    assert all(named[n].dim() <= 1 for n in scalar) and "skip_weights" in scalar
    assert [g["lr"] for g in adam.param_groups] == [cfg.lr_embed, cfg.lr_head, cfg.lr_scalar]
    assert muon.param_groups[0]["lr"] == cfg.lr_hidden
    assert all(g["initial_lr"] == g["lr"] for o in opts for g in o.param_groups)
    assert counts["muon"] == (len(muon_names), sum(named[n].numel() for n in muon_names))
    assert sum(m for _, m in counts.values()) == sum(p.numel() for p in model.parameters())


def test_muon_step_is_the_orthogonalised_gradient():
    model = perturbed_model()
    opts, _ = tp.make_optimizers(model, model.cfg, fused=False)
    muon = opts[1]
    rng = np.random.default_rng(0)
    tokens, starts, _ = _packed_row([frame(rng.integers(4, 24, n)) for n in (100, 120)], 256)
    inputs, labels = tp.mask_tokens(tokens, 0.3, torch.Generator().manual_seed(0))
    model.train()
    model(inputs, starts, labels).backward()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    muon.step()
    lr = muon.param_groups[0]["lr"]
    muon_ids = {id(p) for p in muon.param_groups[0]["params"]}
    for n, p in model.named_parameters():
        if id(p) not in muon_ids:
            assert torch.equal(p, before[n]), n  # Muon leaves the Adam parameters alone
            continue
        delta = p.detach() - before[n]
        assert delta.abs().max() > 0, n
        m, k = p.shape[-2:]
        # first step: the Nesterov update is proportional to the gradient; NS is scale-invariant
        expected = -lr * max(1, m / k) ** 0.5 * tp.newton_schulz(grads[n].view(-1, m, k)).view_as(p)
        torch.testing.assert_close(delta, expected, atol=2e-4 * lr, rtol=1e-3)


def test_lr_multiplier_schedule():
    cfg = cfg_of("--steps", 100, "--warmup_steps", 10, "--cooldown_frac", 0.4)
    m = [tp.lr_multiplier(s, cfg) for s in range(100)]
    assert m[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert m[10:61] == pytest.approx([1.0] * 51)
    assert m[61:] == pytest.approx([(1 - s / 100) / 0.4 for s in range(61, 100)])
    assert m[-1] > 0
    # a run shorter than warm-up + cooldown: the smaller ramp wins, so it never ends at the peak rate
    short = cfg_of("--steps", 30, "--warmup_steps", 30, "--cooldown_frac", 0.5)
    m = [tp.lr_multiplier(s, short) for s in range(30)]
    assert m == pytest.approx([min((s + 1) / 30, (1 - s / 30) / 0.5) for s in range(30)])
    assert max(m) < 0.7 and m[-1] < 0.1 and all(b <= a for a, b in zip(m[20:], m[21:]))


def test_flag_checks_before_training(tmp_path):
    """Settings that would fail or mislead only after training are refused up front."""
    for bad in (["--cooldown_frac", "2"], ["--lr_hidden", "-1"], ["--probe", "true", "--probe_dir", str(tmp_path)]):
        with pytest.raises(SystemExit):
            tp.parse_config(bad, has_gpu=False)
    assert tp.parse_config(["--probe", "true"], has_gpu=False).probe  # the committed probe sets are there


def test_micro_batch_size_is_checked_against_the_mask_block_and_max_length(capsys):
    """tokens_per_micro_batch is packed in ATTN_BLOCK-token attention blocks and holds at least one cropped
    sequence; each violation is refused with its own message."""
    assert cfg_of("--tokens_per_micro_batch", 3 * tp.ATTN_BLOCK, "--max_length", 100).tokens_per_micro_batch == 192
    with pytest.raises(SystemExit) as e:
        tp.parse_config(["--tokens_per_micro_batch", "100", "--max_length", "64"], has_gpu=False)
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"tokens_per_micro_batch 100 is not a positive multiple of {tp.ATTN_BLOCK}" in err
    for bad in ("0", "-64"):
        with pytest.raises(SystemExit):
            tp.parse_config(["--tokens_per_micro_batch", bad, "--max_length", "64"], has_gpu=False)
        assert f"tokens_per_micro_batch {bad} is not a positive multiple" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        tp.parse_config(["--tokens_per_micro_batch", "128", "--max_length", "129"], has_gpu=False)
    assert "max_length 129 is longer than tokens_per_micro_batch 128" in capsys.readouterr().err


def test_a_step_of_partial_micro_batches_is_refused_with_a_value_that_fits(tmp_path):
    """tokens_per_step must hold whole micro-batches on every process; the error proposes the nearest that does
    and is also written to the run's log."""
    with pytest.raises(SystemExit) as e:
        tp.train(["--tokens_per_step", "20000", "--log_dir", str(tmp_path), "--run_id", "partial"])
    assert "tokens_per_step 20000 is not a positive multiple of tokens_per_micro_batch 8192" in str(e.value)
    assert "use --tokens_per_step 16384" in str(e.value)
    assert "use --tokens_per_step 16384" in (tmp_path / "partial.txt").read_text()


# ==========================================================================================================
# 7. Evaluation


def test_classification_metrics_match_scikit_learn():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    classes = np.array(list(range(4, 24)) + [24, 25, 28, 0, 32])
    p = np.ones(len(classes))
    p[-5:] = 0.05
    p[classes == 9] = 0.0  # never true ...
    for trial in range(5):
        y_true = rng.choice(classes, 3000, p=p / p.sum())
        y_pred = np.where(rng.random(3000) < 0.4, y_true, rng.choice(classes, 3000))
        y_pred[y_pred == 11] = 12  # ... and one canonical class never predicted
        C = np.bincount(y_true * 33 + y_pred, minlength=33 * 33).reshape(33, 33)
        got = tp.classification_metrics(C)
        aa = list(range(4, 24))
        want = dict(
            accuracy=sk.accuracy_score(y_true, y_pred),
            mcc=sk.matthews_corrcoef(y_true, y_pred),
            precision=sk.precision_score(y_true, y_pred, average="macro", labels=aa, zero_division=0),
            recall=sk.recall_score(y_true, y_pred, average="macro", labels=aa, zero_division=0),
            f1=sk.f1_score(y_true, y_pred, average="macro", labels=aa, zero_division=0),
        )
        assert set(got) == set(want)
        for k in want:
            assert got[k] == pytest.approx(want[k], abs=1e-9), (trial, k)
    perfect = tp.classification_metrics(np.diag(np.r_[np.zeros(4), np.full(20, 5), np.zeros(9)]).astype(np.int64))
    assert perfect == dict(accuracy=1.0, precision=1.0, recall=1.0, f1=1.0, mcc=1.0)
    assert tp.classification_metrics(np.zeros((33, 33), np.int64))["accuracy"] == 0.0


def test_unigram_entropy_by_hand():
    counts = np.zeros(33, np.int64)
    counts[[0, 1, 2, 3, 29, 30, 31, 32]] = 1000  # specials, '.', '-' and <mask> are not residues: ignored
    counts[4], counts[5], counts[28] = 2, 1, 1  # residues: 1/2, 1/4, 1/4
    assert tp.unigram_entropy(counts) == pytest.approx(1.5 * math.log(2), abs=1e-12)
    counts[4:24] = 7
    counts[24:29] = 0
    assert tp.unigram_entropy(counts) == pytest.approx(math.log(20), abs=1e-12)


@pytest.fixture
def eval_shards(tmp_path):
    rng = np.random.default_rng(11)
    groups = [random_sequences(rng, 50, 1, 300), random_sequences(rng, 25, 1, 120)]
    paths = [str(write_sequences(tmp_path / f"v_valid_{k:06d}.bin", g)) for k, g in enumerate(groups)]
    return paths, [s for g in groups for s in g]


def _eval_pieces(batches):
    """(inputs, labels) of every real sequence, in order (pieces starting with <cls>; padding starts with <pad>)."""
    out = []
    for inputs, starts, labels in batches:
        for a, b in _bounds(np.flatnonzero(starts), len(starts)):
            if inputs[a] == CLS:
                out.append((inputs[a:b], labels[a:b]))
            else:
                assert (inputs[a:b] == PAD).all() and (labels[a:b] == -100).all() and b - a <= 256
    return out


def test_eval_batches_masks_do_not_depend_on_batch_size(eval_shards):
    paths, flat = eval_shards
    small, counts_small = tp.eval_batches(paths, cfg_of("--tokens_per_micro_batch", 512, "--max_length", 256))
    big, counts_big = tp.eval_batches(paths, cfg_of("--tokens_per_micro_batch", 2048, "--max_length", 256))
    assert len(small) > len(big) > 1
    for batches, T in ((small, 512), (big, 2048)):
        for inputs, starts, labels in batches:
            assert inputs.shape == starts.shape == labels.shape == (T,)
            assert inputs.dtype == np.uint8 and starts.dtype == bool and labels.dtype == np.int16
    ps, pb = _eval_pieces(small), _eval_pieces(big)
    assert len(ps) == len(pb) == len(flat)
    n_res = n_masked = 0
    for (i1, l1), (i2, l2), s in zip(ps, pb, flat):
        np.testing.assert_array_equal(i1, i2)
        np.testing.assert_array_equal(l1, l2)
        seq = frame(s)[:256]  # longer sequences keep their first max_length tokens
        assert len(i1) == len(seq)
        scored = l1 != -100
        np.testing.assert_array_equal(l1[scored], seq[scored])
        assert (i1[scored] == MASK).all()  # every masked input is <mask> (no 80/10/10 at evaluation)
        np.testing.assert_array_equal(i1[~scored], seq[~scored])
        assert ((seq[scored] >= 4) & (seq[scored] <= 28)).all()
        n_res += int(((seq >= 4) & (seq <= 28)).sum())
        n_masked += int(scored.sum())
    assert abs(n_masked / n_res - 0.15) < 4 * math.sqrt(0.15 * 0.85 / n_res)
    expected_counts = np.bincount(np.concatenate([frame(s)[:256] for s in flat]), minlength=33)
    np.testing.assert_array_equal(counts_small, expected_counts)
    np.testing.assert_array_equal(counts_big, expected_counts)


def test_eval_mask_of_a_sequence_depends_only_on_its_index(eval_shards, tmp_path):
    """Sequence i's mask is drawn from default_rng([VAL_SEED, i]), whatever shard it is in."""
    paths, flat = eval_shards
    cfg = cfg_of("--tokens_per_micro_batch", 1024, "--max_length", 256)
    ref = _eval_pieces(tp.eval_batches(paths, cfg)[0])
    for i, ((inputs, labels), s) in enumerate(zip(ref, flat)):
        seq = frame(s)[:256]
        picked = (seq >= 4) & (seq <= 28) & (np.random.default_rng([tp.VAL_SEED, i]).random(len(seq)) < 0.15)
        np.testing.assert_array_equal(labels != -100, picked)
    # the same sequences regrouped into one shard: identical masks
    one = str(write_sequences(tmp_path / "joined_valid.bin", flat))
    again = _eval_pieces(tp.eval_batches([one], cfg)[0])
    for (i1, l1), (i2, l2) in zip(ref, again):
        np.testing.assert_array_equal(i1, i2)
        np.testing.assert_array_equal(l1, l2)


@torch.no_grad()
def test_evaluate_equals_direct_masked_cross_entropy(eval_shards):
    paths, _ = eval_shards
    cfg = cfg_of("--tokens_per_micro_batch", 1024, "--max_length", 128)
    batches, _ = tp.eval_batches(paths, cfg)
    model = perturbed_model(seed=4)
    res = tp.evaluate(model, batches, torch.device("cpu"), 0, 1, contextlib.nullcontext())
    loss_sum, n, correct = 0.0, 0, 0
    for inputs, starts, labels in batches:
        logits = model(torch.from_numpy(inputs).long(), torch.from_numpy(starts)).double()
        lab = torch.from_numpy(labels).long()
        m = lab != -100
        loss_sum += float(-torch.log_softmax(logits[m], -1).gather(1, lab[m][:, None]).sum())
        n += int(m.sum())
        correct += int((logits[m].argmax(-1) == lab[m]).sum())
    assert res["masked_tokens"] == n > 500
    assert res["loss"] == pytest.approx(loss_sum / n, rel=1e-6)
    assert res["perplexity"] == pytest.approx(math.exp(loss_sum / n), rel=1e-6)
    assert res["accuracy"] == pytest.approx(correct / n, abs=1e-12)
    # an untrained model (zero-initialised decoder) predicts uniformly: loss ln(33)
    torch.manual_seed(0)
    fresh = tp.ProteinLM(cfg)
    assert tp.evaluate(fresh, batches, torch.device("cpu"), 0, 1, contextlib.nullcontext())["loss"] == \
        pytest.approx(LN_V, abs=1e-6)


def test_export_and_load_model_round_trip(tmp_path):
    model = perturbed_model(seed=5)
    path = tmp_path / "ck" / "run"
    assert tp.export_model(model, model.cfg, str(path)) == str(path)
    mode = lambda name: (path / name).stat().st_mode & 0o777
    assert mode("model.safetensors") == mode("config.json")  # readable by whoever may read the config
    loaded, cfg = tp.load_model(str(path))
    assert cfg == model.cfg
    assert json.loads((path / "config.json").read_text()) == json.loads(json.dumps(vars(model.cfg)))
    assert isinstance(loaded, tp.ProteinLM) and not loaded.training
    tokens, starts, _ = _packed_row([frame([4, 5, 6, 7, 8] * 10)], 256)
    with torch.no_grad():
        torch.testing.assert_close(loaded(tokens, starts), model(tokens, starts), atol=0, rtol=0)


# ==========================================================================================================
# 8. Config


def test_parse_config_cpu_and_reference_presets():
    cfg = tp.parse_config(["--num_layers", "3"], has_gpu=False)
    assert cfg.preset == "cpu" and cfg.num_layers == 3 and cfg.model_dim == tp.Config.model_dim
    assert tp.parse_config([], has_gpu=True).preset == "speedrun"  # the GPU default: the speed track's recipe
    ref = tp.parse_config(["--preset", "reference"], has_gpu=True)
    assert ref.preset == "reference"
    assert (ref.num_layers, ref.model_dim, ref.tokens_per_micro_batch) == (24, 768, 65536)
    assert (ref.num_heads, ref.mlp_dim, ref.num_value_embeds, ref.max_length) == (6, 1536, 12, 1024)
    assert tp.parse_config(["--preset", "cpu"], has_gpu=True).preset == "cpu"
    # command-line flags override the preset
    over = tp.parse_config(["--preset", "reference", "--steps", "7", "--lr_hidden", "0.5", "--run_id", "r"],
                           has_gpu=True)
    assert (over.preset, over.steps, over.lr_hidden, over.run_id, over.num_layers) == ("reference", 7, 0.5, "r", 24)
    assert isinstance(over.lr_hidden, float) and isinstance(over.steps, int)
    assert tp.parse_config(["--compile", "false"], has_gpu=True).compile is False
    assert tp.parse_config(["--compile", "1"], has_gpu=False).compile is True
    assert tp.parse_config(["--save_model", "no"], has_gpu=False).save_model is False


def test_help_gives_each_flags_meaning(capsys):
    """--help shows every Config field with the comment on its line of the source (config_comments): each has
    one, and each appears whole (argparse re-wraps the lines)."""
    with pytest.raises(SystemExit) as stop:
        tp.parse_config(["--help"])
    assert stop.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    comments = tp.config_comments()
    assert set(comments) == {f.name for f in tp.dataclasses.fields(tp.Config)}
    for name, comment in comments.items():
        assert comment and f"--{name} {name.upper()} {' '.join(comment.split())} (default" in text, name


def test_unknown_flag_lists_valid_flags(capsys):
    with pytest.raises(SystemExit) as e:
        tp.parse_config(["--num_layers", "3", "--num_layerz", "3"], has_gpu=False)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--num_layerz" in err and "valid flags" in err
    listed = err.split("valid flags:")[1].split()
    assert listed == [f"--{f.name}" for f in tp.dataclasses.fields(tp.Config)]
    # an abbreviation of a real flag is unknown too (argparse would otherwise accept prefixes)
    with pytest.raises(SystemExit):
        tp.parse_config(["--num_layer", "3"], has_gpu=False)
    assert "--num_layer" in capsys.readouterr().err


def test_a_bad_flag_value_gets_two_lines_naming_it(capsys):
    """A flag error prints a one-line usage (not every flag: --help has them) and the error naming the flag."""
    with pytest.raises(SystemExit) as e:
        tp.parse_config(["--lr_hidden", "abc"], has_gpu=False)
    assert e.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and "--help" in lines[0] and "--lr_hidden" in lines[1] and "'abc'" in lines[1], lines


@pytest.mark.parametrize("args", [
    ["--preset", "huge"],
    ["--tokens_per_micro_batch", "1000"],
    ["--tokens_per_micro_batch", "256", "--max_length", "512"],
    ["--model_dim", "130", "--num_heads", "4"],  # heads of odd size 32.5 / not divisible
    ["--model_dim", "66", "--num_heads", "2"],  # head size 33: odd (RoPE needs pairs)
    ["--num_layers", "4", "--num_value_embeds", "3"],
])
def test_invalid_configs_exit(args, capsys):
    with pytest.raises(SystemExit):
        tp.parse_config(args, has_gpu=False)
    assert "error" in capsys.readouterr().err


def test_reference_model_parameter_count():
    cfg = tp.parse_config(["--preset", "reference"], has_gpu=True)
    with torch.device("meta"):
        model = tp.ProteinLM(cfg)
    assert sum(p.numel() for p in model.parameters()) == 114_190_989
    # the speed track's preset obeys its own parameter cap
    fast = tp.parse_config(["--preset", "speedrun"], has_gpu=True)
    with torch.device("meta"):
        n_fast = sum(p.numel() for p in tp.ProteinLM(fast).parameters())
    assert 0 < n_fast < fast.max_params
    # and the odd-layer mirror: num_value_embeds = (L + 1) // 2 is allowed, the middle block gets its own table
    cfg3 = cfg_of("--num_layers", 3, "--num_value_embeds", 2)
    with torch.device("meta"):
        m3 = tp.ProteinLM(cfg3)
    assert m3.ve_of_block == [0, 1, 0]


# ==========================================================================================================
# 9. A short CPU training run


def _learnable_sequences(rng, n):
    """Skewed amino-acid usage and period-3 repeats (5% noise): learnable well past ln(33) in a few steps."""
    p = np.array([8, 6, 5, 4, 3, 3, 2, 2, 2] + [1] * 11, float)
    out = []
    for _ in range(n):
        motif = rng.choice(np.arange(4, 24), size=3, p=p / p.sum())
        s = np.resize(motif, int(rng.integers(30, 120)))
        noise = rng.random(len(s)) < 0.05
        s[noise] = rng.integers(4, 24, int(noise.sum()))
        out.append(s)
    return out


def test_short_training_run_lowers_validation_loss(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a CPU run even on a GPU machine
    rng = np.random.default_rng(0)
    for split, n in (("train", 600), ("valid", 60), ("test", 60)):
        write_sequences(tmp_path / f"syn_{split}_000000.bin", _learnable_sequences(rng, n))
    steps = 60
    args = ["--train_files", str(tmp_path / "syn_train_*.bin"), "--valid_files", str(tmp_path / "syn_valid_*.bin"),
            "--test_files", str(tmp_path / "syn_test_*.bin"), "--log_dir", str(tmp_path / "logs"),
            "--out_dir", str(tmp_path / "ck"), "--run_id", "unit", "--seed", "0", "--preset", "cpu",
            "--num_layers", "2", "--model_dim", "64", "--num_heads", "2", "--mlp_dim", "128",
            "--tokens_per_micro_batch", "1024", "--tokens_per_step", "2048", "--max_length", "128",
            "--steps", str(steps), "--eval_every", str(steps), "--log_every", "20", "--warmup_steps", "5",
            "--muon_momentum_warmup_steps", "10", "--lr_hidden", "0.04", "--lr_embed", "0.03", "--lr_head", "0.01"]
    source_before = Path(tp.__file__).read_text()
    result = tp.main(args)
    source_after = Path(tp.__file__).read_text()

    # the untrained model scores exactly ln(33) on this validation set (zero-initialised decoder)
    cfg = cfg_of(*args)
    valid, counts = tp.eval_batches([str(tmp_path / "syn_valid_000000.bin")], cfg)
    torch.manual_seed(0)
    initial = tp.evaluate(tp.ProteinLM(cfg), valid, torch.device("cpu"), 0, 1, contextlib.nullcontext())
    assert initial["loss"] == pytest.approx(LN_V, abs=1e-6)

    assert result["steps"] == steps and result["world_size"] == 1 and result["device"] == "cpu"
    assert result["fp8"] is False  # RESULT says which precision trained (the reference preset: true)
    assert result["peak_memory_gib"] is None  # GPU runs only: the caching allocator's peak
    assert torch._inductor.config.inductor_choices_class is tp.KernelChoices  # train() sets it for torch.compile
    assert result["val_unigram_entropy"] == pytest.approx(tp.unigram_entropy(counts), abs=1e-5)
    assert result["val_loss"] < LN_V - 1.0, result
    # it learned from context, not only amino-acid frequencies
    assert result["val_loss"] < result["val_unigram_entropy"] - 0.5, result
    assert result["test_loss"] < LN_V - 1.0
    assert math.isfinite(result["val_loss"]) and result["val_perplexity"] == pytest.approx(
        math.exp(result["val_loss"]), rel=1e-4)
    assert result["tokens"] > 0 and 0 <= result["padding_frac"] < 0.2
    assert (result["target_val_loss"], result["target_reached"], result["time_to_target_s"]) == (None, False, None)

    # the log starts with the exact source of train_plm.py, then a separator, and ends with the RESULT line
    log = (tmp_path / "logs" / "unit.txt").read_text()
    src = next((s for s in (source_before, source_after) if log.startswith(s)), None)
    assert src is not None, "the log must begin with the exact source of train_plm.py"
    assert log[len(src):].startswith("=" * 100 + "\n")
    lines = log[len(src):].splitlines()
    result_lines = [ln for ln in lines if ln.startswith("RESULT ")]
    assert len(result_lines) == 1 and lines[-1] == result_lines[0]
    assert json.loads(result_lines[0][len("RESULT "):]) == result
    assert any(ln.startswith("config ") and json.loads(ln[7:])["steps"] == steps for ln in lines)
    assert any(ln.startswith(f"step:{steps}/{steps} val_loss:{result['val_loss']:.4f}") for ln in lines)

    # the saved model loads back and reproduces the reported validation loss
    path = tmp_path / "ck" / "unit"
    assert (path / "model.safetensors").exists()
    model, loaded_cfg = tp.load_model(str(path))
    assert isinstance(model, tp.ProteinLM)
    assert loaded_cfg.run_id == "unit" and loaded_cfg.num_layers == 2 and loaded_cfg.steps == steps
    assert set(model.state_dict()) == set(tp.ProteinLM(loaded_cfg).state_dict())
    tokens = torch.from_numpy(valid[0][0]).long()
    starts = torch.from_numpy(valid[0][1])
    with torch.no_grad():
        logits = model(tokens, starts)
    assert logits.shape == (1024, 33) and logits.isfinite().all()
    again = tp.evaluate(model, valid, torch.device("cpu"), 0, 1, contextlib.nullcontext())
    assert again["loss"] == pytest.approx(result["val_loss"], abs=1e-5)


def test_a_model_over_the_parameter_cap_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    write_sequences(tmp_path / "t_train_000000.bin", [tp.encode("MKTAYIAKQR", add_special=False)] * 4)
    base = ["--preset", "cpu", "--train_files", str(tmp_path / "t_train_*.bin"), "--log_dir", str(tmp_path / "logs"),
            "--out_dir", str(tmp_path / "ck"), "--run_id", "cap"]
    n = sum(p.numel() for p in tp.ProteinLM(cfg_of("--preset", "cpu")).parameters())
    refusal = f"^train_plm.py: error: {n:,} parameters: the speed track allows fewer than {n:,}"
    with pytest.raises(SystemExit, match=refusal):
        tp.main(base + ["--max_params", str(n)])


@pytest.mark.parametrize("flags", [["--tie_embeddings", "maybe"], ["--compile", "on"], ["--mask_rate", "1.5"],
                                   ["--mask_rate", "0"], ["--steps", "-5"], ["--log_every", "0"],
                                   ["--eval_every", "-1"], ["--target_val_loss", "-1"], ["--target_every", "0"],
                                   ["--stop_at_target", "perhaps"], ["--mlm_80_10_10", "2"],
                                   ["--target_val_loss", "nan"], ["--target_val_loss", "inf"], ["--seed", "-1"],
                                   ["--max_length", "2"], ["--num_heads", "0"], ["--model_dim", "0"],
                                   ["--mlp_dim", "0"], ["--num_layers", "0"], ["--attention_window", "-3"],
                                   ["--logit_softcap", "0"], ["--lr_hidden", "nan"], ["--lr_embed", "inf"],
                                   ["--cooldown_frac", "nan"], ["--model_dim", "100", "--num_heads", "3"],
                                   ["--model_dim", "96", "--num_heads", "32"]])
def test_bad_values_are_refused(flags, capsys):
    with pytest.raises(SystemExit):
        tp.parse_config(["--preset", "cpu", *flags], has_gpu=False)
    assert "error" in capsys.readouterr().err


@pytest.mark.parametrize("flags, says", [
    (["--lr_hidden", "nan", "--diffusion_t_min", "inf"], "--diffusion_t_min, --lr_hidden: not a finite number"),
    (["--model_dim", "100", "--num_heads", "3"], "model_dim 100 is not divisible by num_heads 3"),
    (["--model_dim", "96", "--num_heads", "32"], "head size model_dim / num_heads = 3 must be even"),
    (["--steps", "-5", "--eval_every", "-1"], "--steps, --eval_every: steps and log_every must be >= 1"),
    (["--lr_head", "-1", "--cooldown_frac", "2"], "--cooldown_frac, --lr_head: cooldown_frac must lie in [0, 1]"),
    (["--num_heads", "0"], "--num_heads: num_layers, model_dim, num_heads and mlp_dim must be >= 1")])
def test_bad_values_are_named(flags, says, capsys):
    with pytest.raises(SystemExit):
        tp.parse_config(["--preset", "cpu", *flags], has_gpu=False)
    assert says in capsys.readouterr().err


def test_booleans_parse_strictly():
    assert tp.parse_config(["--tie_embeddings", "Yes"], has_gpu=False).tie_embeddings is True
    assert tp.parse_config(["--save_model", "0"], has_gpu=False).save_model is False


# ==========================================================================================================
# 10. Speed-track target (target_val_loss) and the training masks


TARGET_STEPS, TARGET_EVERY = 40, 2
TRAIN_LINE = re.compile(r"^step:(\d+)/\d+ train_loss:(\S+) ")
QUARTER_LINE = re.compile(r"^step:(\d+)/\d+ val_loss_quarter:(\S+) ")
VAL_LINE = re.compile(r"^step:(\d+)/\d+ val_loss:(\S+) ")
REACHED_LINE = re.compile(r"^target val_loss (\S+) reached: step (\d+), train_time (\S+)s, val_loss (\S+), "
                          r"test_loss (\S+)$")


@pytest.fixture(scope="module")
def learnable_shards(tmp_path_factory):
    """(folder of syn_{train,valid,test}_000000.bin of _learnable_sequences, the valid unigram entropy)."""
    d = tmp_path_factory.mktemp("learnable")
    rng = np.random.default_rng(0)
    for split, n in (("train", 300), ("valid", 40), ("test", 40)):
        write_sequences(d / f"syn_{split}_000000.bin", _learnable_sequences(rng, n))
    counts = tp.eval_batches([str(d / "syn_valid_000000.bin")], cfg_of("--max_length", 128))[1]
    return d, tp.unigram_entropy(counts)


def _target_run(d, tmp_path, run_id, *extra):
    """A TARGET_STEPS-step CPU run on the learnable shards: (RESULT, its log lines after the source)."""
    args = ["--train_files", str(d / "syn_train_*.bin"), "--valid_files", str(d / "syn_valid_*.bin"),
            "--test_files", str(d / "syn_test_*.bin"), "--log_dir", str(tmp_path / "logs"),
            "--out_dir", str(tmp_path / "ck"), "--run_id", run_id, "--seed", "0", "--preset", "cpu",
            "--num_layers", "2", "--model_dim", "64", "--num_heads", "2", "--mlp_dim", "128",
            "--tokens_per_micro_batch", "1024", "--tokens_per_step", "1024", "--max_length", "128",
            "--steps", str(TARGET_STEPS), "--eval_every", "0", "--log_every", "1", "--warmup_steps", "3",
            "--muon_momentum_warmup_steps", "10", "--lr_hidden", "0.04", "--lr_embed", "0.03", "--lr_head", "0.01",
            "--save_model", "false", "--target_every", str(TARGET_EVERY), *[str(a) for a in extra]]
    result = tp.main(args)
    text = (tmp_path / "logs" / f"{run_id}.txt").read_text()
    assert text.startswith(tp.SOURCE)
    return result, text[len(tp.SOURCE):].splitlines()


def test_a_one_block_model_trains(learnable_shards, tmp_path, monkeypatch):
    """One block: its U-net skip weights are an empty parameter that gets no gradient (the step's gradient
    sum must not trip over it)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result, _ = _target_run(learnable_shards[0], tmp_path, "one_block", "--num_layers", 1, "--steps", 3,
                            "--tokens_per_step", 2048)  # 2 micro-batches: their gradients are summed
    assert result["steps"] == 3 and math.isfinite(result["val_loss"])


def test_sparse_prediction_trains_and_stops_if_masking_outgrows_its_rows(learnable_shards, tmp_path, monkeypatch):
    """MLM training reads the loss at prediction_capacity rows per micro-batch. More masked positions than that
    (8 standard deviations: never in practice) would leave some out of the loss: the run stops at the next log
    step, saying so, instead of training on a loss that silently skips them."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    calls, original = [], tp.prediction_rows

    def counted(labels, capacity):
        calls.append(capacity)
        return original(labels, capacity)

    monkeypatch.setattr(tp, "prediction_rows", counted)
    result, _ = _target_run(learnable_shards[0], tmp_path, "sparse", "--steps", 2)
    assert math.isfinite(result["val_loss"]) and calls == [tp.prediction_capacity(1024, 0.2)] * 2
    monkeypatch.setattr(tp, "prediction_capacity", lambda tokens, rate: 64)  # ~200 masked of 1,024 tokens
    with pytest.raises(SystemExit, match=r"more positions in a micro-batch than the 64 rows its loss reads .*"
                                         r"left out of the loss in steps up to 1"):
        _target_run(learnable_shards[0], tmp_path, "overflow", "--steps", 2)


def _by_step(lines, pattern):
    """{step: value} of the log lines matching pattern; each step at most once."""
    out = {}
    for ln in lines:
        m = pattern.match(ln)
        if m:
            assert int(m.group(1)) not in out, ln
            out[int(m.group(1))] = float(m.group(2))
    return out


def _reached(lines):
    return [m for m in map(REACHED_LINE.match, lines) if m]


def _check_cheap_checks(lines, target, until):
    """Quarter-shard checks every TARGET_EVERY steps up to `until`; a whole-shard evaluation exactly where the
    quarter came within TARGET_SLACK of the target."""
    quarter, full = _by_step(lines, QUARTER_LINE), _by_step(lines, VAL_LINE)
    assert sorted(quarter) == list(range(TARGET_EVERY, until + 1, TARGET_EVERY))
    near = target + tp.TARGET_SLACK
    for s, q in quarter.items():
        if abs(q - near) > 1e-4:  # (the log rounds to 4 decimals)
            assert (s in full) == (q <= near), (s, q, near)
    return full


def test_target_val_loss_stops_the_run_when_reached(learnable_shards, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    d, entropy = learnable_shards
    target = round(entropy + 0.1, 4)
    result, lines = _target_run(d, tmp_path, "stop", "--target_val_loss", target)
    [m] = _reached(lines)
    step = int(m.group(2))
    assert float(m.group(1)) == target == result["target_val_loss"] and result["target_reached"] is True
    assert result["steps"] == step < TARGET_STEPS and step % TARGET_EVERY == 0
    assert max(_by_step(lines, TRAIN_LINE)) == step  # no step after the target
    assert 0 < result["time_to_target_s"] <= result["train_time_s"]
    assert float(m.group(3)) == pytest.approx(result["time_to_target_s"], abs=0.006)
    # the run ends on the evaluation that reached the target: its val and test loss are the RESULT's
    assert result["val_loss"] <= target
    assert float(m.group(4)) == pytest.approx(result["val_loss"], abs=6e-5)
    assert float(m.group(5)) == pytest.approx(result["test_loss"], abs=6e-5)
    full = _check_cheap_checks(lines, target, step)
    assert full[step] <= target and all(v > target for s, v in full.items() if s < step)
    assert result["tokens"] < 1024 * step  # tokens of the steps done, not of --steps


def test_without_stop_at_target_the_run_goes_on_and_reports_the_time(learnable_shards, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    d, entropy = learnable_shards
    target = round(entropy + 0.1, 4)
    stopped, stop_lines = _target_run(d, tmp_path, "stop", "--target_val_loss", target)
    result, lines = _target_run(d, tmp_path, "on", "--target_val_loss", target, "--stop_at_target", "false")
    assert result["steps"] == TARGET_STEPS and result["target_reached"] is True
    assert 0 < result["time_to_target_s"] < result["train_time_s"]
    [m] = _reached(lines)  # reported once, at the same step and losses as the run that stopped there
    assert m.group(1, 2, 4, 5) == _reached(stop_lines)[0].group(1, 2, 4, 5)  # (train_time is a clock)
    step = int(m.group(2))
    assert step == stopped["steps"]
    train = _by_step(lines, TRAIN_LINE)
    assert sorted(train) == list(range(1, TARGET_STEPS + 1))
    assert {s: v for s, v in train.items() if s <= step} == _by_step(stop_lines, TRAIN_LINE)
    full = _check_cheap_checks(lines, target, step)  # no more checks once reached
    assert max(full) == TARGET_STEPS and result["val_loss"] < full[step]


def test_an_unreachable_target_is_reported_as_not_reached(learnable_shards, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    d, _ = learnable_shards
    result, lines = _target_run(d, tmp_path, "far", "--target_val_loss", 0.5, "--steps", 10)
    assert result["target_val_loss"] == 0.5 and result["target_reached"] is False
    assert result["time_to_target_s"] is None and result["steps"] == 10
    assert not _reached(lines)
    assert sorted(_by_step(lines, QUARTER_LINE)) == [2, 4, 6, 8]  # step 10: the final evaluation instead
    assert sorted(_by_step(lines, VAL_LINE)) == [10]  # far from the target: no whole-shard evaluation
    # and with the target off (the default), no checks and nothing reported
    off, off_lines = _target_run(d, tmp_path, "off", "--steps", 4)
    assert (off["target_val_loss"], off["target_reached"], off["time_to_target_s"]) == (None, False, None)
    assert not _by_step(off_lines, QUARTER_LINE) and not _reached(off_lines)


def test_time_to_target_survives_a_resume(learnable_shards, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    d, entropy = learnable_shards
    target = round(entropy + 0.1, 4)
    full, lines = _target_run(d, tmp_path, "res", "--target_val_loss", target, "--stop_at_target", "false",
                              "--steps", 20, "--save_every", 16)
    [m] = _reached(lines)
    assert int(m.group(2)) < 16 and full["target_reached"]
    resumed = tp.main(["--resume", str(tmp_path / "ck" / "res" / "ckpt_000016.pt"), "--out_dir",
                       str(tmp_path / "ck2")])
    text = (tmp_path / "logs" / "res.txt").read_text()
    assert len(_reached(text[len(tp.SOURCE):].splitlines())) == 1  # not "reached" a second time
    assert resumed["target_reached"] is True and resumed["time_to_target_s"] == full["time_to_target_s"]


def test_training_masks_are_seeded_per_global_micro_batch(learnable_shards, tmp_path, monkeypatch):
    """mask_gen is re-seeded with (seed << 32) + g before each micro-batch, and --mlm_80_10_10 reaches mask_tokens."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    d, _ = learnable_shards
    calls, real_mask_tokens = [], tp.mask_tokens

    def spy(tokens, rate, generator, bert=True):
        calls.append((generator.initial_seed(), bert))
        return real_mask_tokens(tokens, rate, generator, bert)

    monkeypatch.setattr(tp, "mask_tokens", spy)
    _target_run(d, tmp_path, "m", "--steps", 2, "--tokens_per_step", 2048, "--seed", 3, "--mlm_80_10_10", "false")
    assert calls == [((3 << 32) + g, False) for g in range(4)]
    calls.clear()
    _target_run(d, tmp_path, "m2", "--steps", 1)
    assert calls == [(0, True)]


def test_a_gpu_preset_is_refused_without_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for preset in tp.GPU_PRESETS:
        with pytest.raises(SystemExit, match=f"--preset {preset} is sized for GPUs.*use --preset cpu"):
            tp.main(["--preset", preset])


def test_every_refusal_exits_with_status_2_and_one_line(tmp_path):
    """Run as a script: a flag argparse rejects, a refusal inside training (a GPU preset on a machine without
    CUDA; a shard glob that matches nothing) and a mode's missing file all exit with status 2 (argparse's usage
    error) and say why on stderr, without a traceback."""
    script = str(Path(tp.__file__).parent / "train_plm.py")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    cases = [(["--no_such_flag", "1"], "valid flags"),
             (["--preset", "reference"], "is sized for GPUs"),
             (["--preset", "cpu", "--train_files", str(tmp_path / "nothere_*.bin")], "no train shards match"),
             (["score", str(tmp_path / "no_model"), str(tmp_path / "x.fasta")], "error:")]
    for argv, text in cases:
        r = subprocess.run([sys.executable, script, *argv], capture_output=True, text=True, env=env,
                           cwd=tmp_path, timeout=300)
        assert r.returncode == 2 and text in r.stderr and "Traceback" not in r.stderr, (argv, r.returncode,
                                                                                          r.stderr[-800:])


def test_missing_reference_shards_name_the_script_that_builds_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="make_reference_shards.py"):
        tp.resolve_files(str(tmp_path / "reference_train_*.bin"), "train")
    with pytest.raises(FileNotFoundError, match=r"data/prepare\.py --sample\)"):  # the default run's shards
        tp.resolve_files(str(tmp_path / "sample_train_*.bin"), "train")
    with pytest.raises(FileNotFoundError, match=r"data/prepare\.py --help\)"):
        tp.resolve_files(str(tmp_path / "mine_train_*.bin"), "train")


def test_missing_shards_stop_the_run_before_its_log(tmp_path):
    """A train, valid or test glob that matches nothing: one line naming it, and no log file left behind."""
    for split in ("train", "valid", "test"):
        (tmp_path / f"x_{split}_000000.bin").touch()  # the others match a file (the globs are all it checks)
    for split in ("train", "valid", "test"):
        globs = [a for s in ("train", "valid", "test") for a in (f"--{s}_files", str(tmp_path / f"x_{s}_*.bin"))]
        with pytest.raises(SystemExit, match=rf"error: no {split} shards match .*nothere_"):
            tp.main(["--preset", "cpu", *TINY, *globs, f"--{split}_files", str(tmp_path / "nothere_*.bin"),
                     "--log_dir", str(tmp_path / "logs"), "--run_id", split])
        assert not (tmp_path / "logs" / f"{split}.txt").exists()


def test_compile_is_refused_without_a_gpu(monkeypatch):
    """On CPU the attention runs on each sequence's slice: every packing would recompile."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="--compile true needs a GPU"):
        tp.main(["--preset", "cpu", "--compile", "true"])


def test_a_loader_error_ends_the_run_instead_of_hanging(loader_shards, monkeypatch):
    """An exception in the loader's thread (bad data, a bug) reaches next() as an error, not a silent wait."""
    paths, _ = loader_shards

    def broken(self, start=(0, 0, 0)):
        yield from ()
        raise ValueError("a broken shard")

    monkeypatch.setattr(tp.PackedLoader, "batches", broken)
    loader = tp.PackedLoader(paths, cfg_of(*LOADER_ARGS), 0, 1, torch.device("cpu"), LOADER_SEED)
    loader.thread.join(timeout=30)
    with pytest.raises(RuntimeError, match="the data loader failed: ValueError\\('a broken shard'\\)"):
        loader.next()


def test_a_run_stopped_at_its_target_is_not_resumed(learnable_shards, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    d, entropy = learnable_shards
    target = round(entropy + 0.1, 4)
    full, lines = _target_run(d, tmp_path, "st", "--target_val_loss", target, "--stop_at_target", "false",
                              "--steps", 20, "--save_every", 16)
    assert full["target_reached"]
    with pytest.raises(SystemExit, match="reached target_val_loss .* and stopped there; nothing to resume"):
        tp.main(["--resume", str(tmp_path / "ck" / "st" / "ckpt_000016.pt"), "--stop_at_target", "true"])
