"""train_plm.py: pretrain a BERT-style protein language model (masked language modelling, or masked
diffusion) in one file, and generate from / score with a trained one.

    python train_plm.py                                   # speedrun preset on a GPU (val 2.70 in 43-58 s), cpu without
    python train_plm.py --preset cpu --steps 200          # any setting can be overridden by its own name
    python train_plm.py --objective mlm_to_diffusion      # MLM first, then masked diffusion
    python train_plm.py generate checkpoints/RUN --num 10 --length 120 > gen.fasta   # iterative unmasking
    python train_plm.py score checkpoints/RUN gen.fasta   # pseudo-perplexity and composition
    python train_plm.py --preset reference                # the reference trainer's model and batch (throughput)
    torchrun --standalone --nproc_per_node=4 train_plm.py  # speedrun on 4 GPUs (its 4 micro-batches a step)
    torchrun --standalone --nproc_per_node=8 train_plm.py --preset reference   # 8 GPUs: 8 micro-batches
    torchrun --nnodes=2 --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 train_plm.py \
        --preset reference --tokens_per_step 1048576   # 16 GPUs need 16 micro-batches: a 2x batch

Design contract: one self-contained file (standard library, torch, numpy; on a GPU also Triton, which CUDA
builds of torch bring, for its own kernels: attention and QK-norm + RoPE), read top to bottom in the order
data flows: settings -> tokenizer -> shards and loader -> masking -> model -> optimizers -> evaluation ->
checkpoints and export -> generation and scoring -> logging -> main loop. A record of the speedrun is a
frozen copy of this file plus the log it wrote, and the log begins with this file's exact source. What is
not training (FASTA conversion, downloads, tests, record checks) lives outside it, under data/, records/
and tests/.

Shapes: T = tokens in one packed micro-batch (one row of whole sequences, document-masked attention),
D = model width, H = heads, V = 33 (vocabulary). Losses are in nats.
"""
import argparse
import contextlib
import copy
import dataclasses
import glob
import gzip
import hashlib
import json
import math
import os
import platform
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

with open(__file__) as _f:
    SOURCE = _f.read()  # read once at start: every log begins with the exact code that ran

# ----------------------------------------------------------------------------------------------------------
# Settings: every field is a command-line flag of the same name; presets below override the defaults.


@dataclass
class Config:
    preset: str = "cpu"  # named set of overrides (PRESETS): cpu, reference, speedrun
    seed: int = 0  # model init, data order and training masks
    run_id: str = ""  # names logs/<run_id>.txt and checkpoints/<run_id>/; default <preset>_<time>
    log_dir: str = "logs"  # the run's log (logs/<run_id>.txt): the code, the config, every metric
    out_dir: str = "checkpoints"  # trained weights + resolved config are saved here at the end
    # data: shards in the published format (256 x int32 header, then uint8 tokens)
    train_files: str = "data/shards/sample_train_*.bin"  # glob
    valid_files: str = "data/shards/sample_valid_*.bin"  # glob: validation (fixed-seed 15% <mask>) and the stop rule
    test_files: str = "data/shards/sample_test_*.bin"  # glob: one test pass at the end
    max_length: int = 512  # tokens incl. <cls>/<eos>; longer sequences are cropped at a random window
    tokens_per_micro_batch: int = 8192  # one packed row per GPU and forward pass (a multiple of ATTN_BLOCK, 64)
    tokens_per_step: int = 16384  # global batch; gradient accumulation = step / (micro x GPUs)
    # objective: MLM (80/10/10 at mask_rate) or masked diffusion (per-sequence rate t, loss CE / t)
    objective: str = "mlm"  # mlm | diffusion | mlm_to_diffusion
    mask_rate: float = 0.2  # MLM's rate; mlm_to_diffusion's t when its range starts widening
    mlm_80_10_10: bool = True  # MLM: of the selected, 80% <mask>, 10% random, 10% kept (BERT); False: all <mask>
    diffusion_t_min: float = 0.001  # diffusion draws t ~ U(diffusion_t_min, 1) (MDLM and LLaDA use 1e-3)
    mlm_steps: int = 100  # mlm_to_diffusion: steps of MLM (as objective mlm), then diffusion from t = mask_rate
    widen_steps: int = 100  # steps over which t's range widens linearly to [diffusion_t_min, 1]
    nelbo_grid: int = 8  # t values (bin midpoints of (0, 1)) of the validation NELBO; 0 = off
    # model
    num_layers: int = 2  # transformer blocks
    model_dim: int = 128  # width of the residual stream
    num_heads: int = 2  # attention heads (head size model_dim / num_heads)
    mlp_dim: int = 512  # hidden width of each block's ReLU² MLP
    num_value_embeds: int = 1  # tables; table i feeds block i and block num_layers-1-i
    logit_softcap: float = 32.0  # logits = c * tanh(logits / c)
    tie_embeddings: bool = False  # the LM head's decoder shares the input embedding matrix
    attention_window: int = 0  # keys at most this many positions away, within the sequence; 0 = whole sequence
    max_params: int = 150_000_000  # speed-track cap (records/README.md): a larger model is refused; 0 = no cap
    # optimisation: Muon for hidden matrices, Adam for the rest; warm-up, constant, linear cooldown to 0
    steps: int = 200  # optimizer steps of the whole schedule
    lr_hidden: float = 0.02  # Muon
    lr_embed: float = 0.01  # Adam: token and value embeddings
    lr_head: float = 0.004  # Adam: LM head
    lr_scalar: float = 0.01  # Adam: skip, residual and value-embedding mixing weights
    warmup_steps: int = 30  # learning rates ramp linearly from 0 over these steps
    cooldown_frac: float = 0.5  # last fraction of the steps decays the learning rates linearly to 0
    muon_momentum: float = 0.95  # Muon's Nesterov momentum after its warm-up
    muon_momentum_warmup_steps: int = 50  # momentum ramps from 0.85 to muon_momentum
    # evaluation and logging
    eval_every: int = 100  # steps between validation passes (0: only at the end)
    target_val_loss: float = 0.0  # speed track: report the training time to this val loss (0: off)
    target_every: int = 10  # steps between target checks on a fixed quarter of the valid shard (whole shard to confirm)
    stop_at_target: bool = True  # end the run once the whole valid shard is at or below target_val_loss
    log_every: int = 20  # steps between log lines (each costs one host-device sync)
    probe: bool = False  # at the end, the representation benchmark (linear probes per layer): quality_score
    probe_dir: str = "data/probes"  # its labelled sets (data/make_probes.py)
    compile: bool = False  # torch.compile the model (GPU presets); warm-up is excluded from the clock
    cuda_graph: bool = True  # with compile on CUDA: each micro-batch's forward + backward replayed as a CUDA graph
    fp8: bool = False  # training on CUDA: the blocks' qkv product and MLP in FP8 (FP8Linear, MLPFP8)
    # evaluation and inference (no gradients) run them in bf16, so an exported model's fp8 matters only to training
    # checkpoints, export, tracking (secrets only from the environment: HF_TOKEN, WANDB_API_KEY)
    save_every: int = 0  # steps between checkpoints (0: none); one is also written on SIGTERM/SIGINT
    resume: str = ""  # a checkpoint path, or "latest": the newest readable one of this run_id (or of any run)
    save_model: bool = True  # export model.safetensors + config.json to out_dir/<run_id>/ at the end
    hub_repo: str = ""  # also upload that export to this Hugging Face hub repo (needs HF_TOKEN)
    wandb: bool = False  # log config, metrics and the log file to Weights & Biases (WANDB_MODE=offline works)
    wandb_project: str = "plm-speedrun"  # the W&B project of --wandb true runs


PRESETS = {
    # A tiny model for a 2-core laptop: ~3 minutes, learns well past the unigram baseline.
    "cpu": {},
    # The reference trainer's architecture and batch shape (../shared/bench/README.md): 114,190,989 params.
    "reference": dict(
        train_files="data/reference/reference_train_*.bin",
        valid_files="data/reference/reference_valid_*.bin",
        test_files="data/reference/reference_test_*.bin",
        max_length=1024, tokens_per_micro_batch=65536, tokens_per_step=524288,
        num_layers=24, model_dim=768, num_heads=6, mlp_dim=1536, num_value_embeds=12,
        steps=200, lr_hidden=0.05, lr_embed=0.06, lr_head=0.008, lr_scalar=0.04,
        warmup_steps=20, cooldown_frac=0.6, muon_momentum_warmup_steps=50,
        eval_every=50, log_every=10, compile=True,
        fp8=True,  # +4.7% tokens/s on an H200 (records/2026-11-30_FP8RowWise); --fp8 false: all products in bf16
        # (GPUs without FP8 matrix units, compute capability < 8.9, need --fp8 false; else the run stops, saying so)
    ),
}
# The speed track's recipe (README.md, Benchmark): on this code seeds 0-5 all end their 300 steps (~70-71 s of
# training on one H200) below validation loss 2.70: seeds 0-2 (the record) at mean 2.412, passing 2.70 at 42.7-42.8 s
# (records/2026-12-01_SpeedrunCUDAGraphs), seeds 3-5 at mean 2.587, passing it at 48.9-58.3 s
# (records/2026-12-01_SpeedrunSeeds3to5); before sparse prediction and block seams, 5 of 5 in 76.25 s, mean 2.460
# (records/2026-12-01_SpeedrunFP8; in bf16, --fp8 false: 81.6 s, mean 2.481 over 6 seeds,
# records/2026-12-01_SpeedrunKernels). With sparse prediction, 8 of 9 seeds passed 2.70, at 44.2-64.0 s; seed 3
# spiked at step 50 and ended at 2.740 (records/2026-12-01_SparsePrediction).
# Against `reference`: half the blocks (57M parameters, 2x the tokens/s), half the batch (2x the optimizer
# steps per token), a 300-step schedule with a 50-step warm-up (20 let loss spikes slow 1 seed in 5), the stop rule.
PRESETS["speedrun"] = {**PRESETS["reference"], **dict(
    num_layers=12, num_value_embeds=6, tokens_per_step=262144, steps=300, warmup_steps=50,
    eval_every=60, target_val_loss=2.70, target_every=10)}


GPU_PRESETS = ("reference", "speedrun")  # refused on a machine without CUDA
OBJECTIVES = ("mlm", "diffusion", "mlm_to_diffusion")


def parse_bool(text):
    """'true'/'1'/'yes' -> True, 'false'/'0'/'no' -> False (any case); anything else is an argparse error."""
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not a boolean (true/false, yes/no, 1/0)")


def config_comments():
    """{field name: the comment on its line of Config above} (the text after "  # "): each flag's --help."""
    body = SOURCE[SOURCE.index("\nclass Config:"):SOURCE.index("\nPRESETS = {")]
    comments = {}
    for line in body.splitlines():
        code, sep, comment = line.partition("  # ")
        if sep and ":" in code and not code.lstrip().startswith("#"):
            comments[code.split(":")[0].strip()] = comment.strip()
    return comments


def parse_config(argv=None, has_gpu=None, base=None):
    """Resolve the config: dataclass defaults < preset < command-line flags; with `base` (a dict, e.g. a
    checkpoint's config): base < command-line flags.

    Without --preset, a machine with a GPU gets `speedrun` and one without gets `cpu`.
    Raises SystemExit (argparse error) on an unknown flag, listing every valid flag.
    """
    fields, comments = dataclasses.fields(Config), config_comments()
    parser = argparse.ArgumentParser(
        description="Pretrain a protein language model (see the module docstring). Other modes, each with --help: "
                    "train_plm.py generate MODEL | score MODEL FASTA | probe MODEL.",
        usage="%(prog)s [--FLAG VALUE ...]  (--help lists every flag)",  # an error's usage line: not 33 lines
        allow_abbrev=False)  # a typo must not silently set another field
    for f in fields:
        kind = {"bool": parse_bool, "int": int, "float": float}.get(
            f.type if isinstance(f.type, str) else f.type.__name__, str)
        overrides = "".join(f", {p}: {v[f.name]!r}" for p, v in PRESETS.items() if f.name in v)
        default = "'speedrun' with a GPU, 'cpu' without" if f.name == "preset" else repr(f.default)
        meaning = comments.get(f.name, "").replace("%", "%%")  # argparse formats help with %
        parser.add_argument(f"--{f.name}", type=kind, default=None, help=f"{meaning} (default {default}{overrides})")
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        parser.error(f"unknown arguments {unknown}; valid flags: " + " ".join(f"--{f.name}" for f in fields))
    given = {k: v for k, v in vars(args).items() if v is not None}
    if has_gpu is None:
        has_gpu = torch.cuda.is_available()
    preset = given.get("preset", "speedrun" if has_gpu else "cpu")
    if preset not in PRESETS:
        parser.error(f"unknown preset {preset!r}; presets: {sorted(PRESETS)}")
    cfg = Config(**{**PRESETS[preset], **given, "preset": preset}) if base is None else Config(**{**base, **given})
    nonfinite = [f"--{f.name}" for f in fields if isinstance(getattr(cfg, f.name), float)
                 and not math.isfinite(getattr(cfg, f.name))]
    if nonfinite:  # nan passes every range check below (its comparisons are all False)
        parser.error(f"{', '.join(nonfinite)}: not a finite number")
    if cfg.tokens_per_micro_batch % ATTN_BLOCK or cfg.tokens_per_micro_batch < ATTN_BLOCK:  # packed in blocks
        parser.error(f"tokens_per_micro_batch {cfg.tokens_per_micro_batch} is not a positive multiple of {ATTN_BLOCK}")
    if cfg.max_length > cfg.tokens_per_micro_batch:
        parser.error(f"max_length {cfg.max_length} is longer than tokens_per_micro_batch {cfg.tokens_per_micro_batch}")

    def refuse(broken, rule):  # names each flag that breaks the rule, then the rule
        if broken:
            parser.error(f"{', '.join('--' + name for name in broken)}: {rule}")

    below = lambda names, low: [n for n in names if getattr(cfg, n) < low]
    refuse(below(("num_layers", "model_dim", "num_heads", "mlp_dim"), 1) + below(("max_length",), 3),
           "num_layers, model_dim, num_heads and mlp_dim must be >= 1, max_length >= 3 (<cls> x <eos>)")
    B = FP8_BLOCK
    if cfg.fp8 and (cfg.model_dim % B or cfg.mlp_dim % (4 * B) or cfg.tokens_per_micro_batch % B):
        parser.error(f"--fp8 true needs model_dim and tokens_per_micro_batch multiples of {FP8_BLOCK} and mlp_dim of "
                     f"{4 * FP8_BLOCK} (the MLP's FP8 tiles and block scales); got {cfg.model_dim}, "
                     f"{cfg.tokens_per_micro_batch} and {cfg.mlp_dim}")
    if cfg.model_dim % cfg.num_heads:
        parser.error(f"model_dim {cfg.model_dim} is not divisible by num_heads {cfg.num_heads}")
    if (cfg.model_dim // cfg.num_heads) % 2:
        parser.error(f"the head size model_dim / num_heads = {cfg.model_dim // cfg.num_heads} must be even (RoPE "
                     "rotates pairs)")
    if cfg.num_value_embeds > (cfg.num_layers + 1) // 2:
        parser.error("num_value_embeds can be at most half the blocks, rounded up (each table feeds two mirrored "
                     "blocks; with an odd count the middle block is its own mirror)")
    if cfg.objective not in OBJECTIVES:
        parser.error(f"unknown objective {cfg.objective!r}; objectives: {list(OBJECTIVES)}")
    if not 0 < cfg.diffusion_t_min < 1:
        parser.error("diffusion_t_min must lie in (0, 1)")
    if not 0 < cfg.mask_rate <= 1:
        parser.error("mask_rate must lie in (0, 1]")
    refuse(below(("target_val_loss",), 0) + below(("target_every",), 1),  # nan and inf: refused above
           "target_val_loss must be a finite number >= 0 (0: off) and target_every >= 1")
    refuse(below(("seed", "attention_window"), 0) + (["logit_softcap"] if not cfg.logit_softcap > 0 else []),
           "seed and attention_window must be >= 0, logit_softcap > 0")
    refuse((["cooldown_frac"] if not 0 <= cfg.cooldown_frac <= 1 else []) +
           below(("lr_hidden", "lr_embed", "lr_head", "lr_scalar"), 0),
           "cooldown_frac must lie in [0, 1] and the learning rates must be >= 0")
    if cfg.probe and not all(os.path.exists(os.path.join(cfg.probe_dir, f"{t}.tsv.gz")) for t in PROBE_TASKS):
        parser.error(f"--probe true: the probe sets are missing from {cfg.probe_dir}/ (build them with "
                     "python data/make_probes.py); checked before training, not after")
    refuse(below(("steps", "log_every"), 1) +
           below(("eval_every", "save_every", "warmup_steps", "nelbo_grid", "mlm_steps", "widen_steps"), 0),
           "steps and log_every must be >= 1; eval_every, save_every, warmup_steps, nelbo_grid, mlm_steps and "
           "widen_steps >= 0")
    return cfg


# ----------------------------------------------------------------------------------------------------------
# Tokenizer: the ESM-2 vocabulary with its fixed ids.

VOCAB = ["<cls>", "<pad>", "<eos>", "<unk>", "L", "A", "G", "V", "S", "E", "R", "T", "I", "D", "P", "K", "Q",
         "N", "F", "Y", "M", "H", "W", "C", "X", "B", "U", "Z", "O", ".", "-", "<null_1>", "<mask>"]
TOKEN_ID = {t: i for i, t in enumerate(VOCAB)}
CLS, PAD, EOS, UNK, MASK = 0, 1, 2, 3, 32
CANONICAL = range(4, 24)  # the 20 standard amino acids
RESIDUES = range(4, 29)  # canonical + X B U Z O: the positions MLM may select and evaluation scores
RESIDUE_LETTERS = frozenset(VOCAB[RESIDUES.start:RESIDUES.stop])  # what a FASTA record may hold
V = len(VOCAB)


def encode(seq, add_special=True):
    """Protein string -> token ids, np.ndarray (n,) uint8; `<...>` tokens (e.g. `<mask>`) are read whole.

    Lower case is upper-cased. Raises ValueError naming the character and its position (1-based, as
    data/prepare.py counts) if it is not in the vocabulary.
    """
    ids, i = [], 0
    while i < len(seq):
        if seq[i] == "<":
            j = seq.find(">", i)
            tok = seq[i:j + 1] if j > 0 else seq[i:]
            i += len(tok)
        else:
            tok, i = seq[i].upper(), i + 1
        if tok not in TOKEN_ID:
            raise ValueError(f"character {tok!r} at position {i - len(tok) + 1} is not in the ESM-2 vocabulary")
        ids.append(TOKEN_ID[tok])
    if add_special:
        ids = [CLS] + ids + [EOS]
    return np.array(ids, dtype=np.uint8)


def decode(ids, skip_special=True):
    """Token ids (any int sequence or tensor) -> string; special tokens dropped unless skip_special=False."""
    ids = [int(i) for i in ids]
    return "".join(VOCAB[i] for i in ids if not (skip_special and i in (CLS, PAD, EOS)))


# ----------------------------------------------------------------------------------------------------------
# Shards and the distributed packed loader.

MAGIC, SHARD_VERSION, HEADER_INTS = 20240520, 1, 256


class ShardError(ValueError):
    """A shard that is not in the published format, or not framed <cls> residues <eos>."""


def open_shard(path):
    """Memory-map a shard: returns np.memmap (n_tokens,) uint8 (nothing is read into RAM).

    Raises ShardError (a ValueError) naming the file when it is a folder, or the magic, the version or the token
    count does not match.
    """
    if os.path.isdir(path):
        raise ShardError(f"{path}: a folder, not a shard; give its shards as a glob, e.g. '{path}/*.bin'")
    size = os.path.getsize(path)
    if size < HEADER_INTS * 4:
        raise ShardError(f"{path}: {size} bytes, shorter than the {HEADER_INTS * 4}-byte shard header")
    header = np.fromfile(path, dtype="<i4", count=HEADER_INTS)
    if header[0] != MAGIC:
        raise ShardError(f"{path}: wrong magic number {header[0]} (expected {MAGIC}); not a token shard")
    if header[1] != SHARD_VERSION:
        raise ShardError(f"{path}: unsupported shard version {header[1]} (expected {SHARD_VERSION})")
    n = int(header[2])
    if n != size - HEADER_INTS * 4:
        raise ShardError(f"{path}: header says {n} tokens but the file holds {size - HEADER_INTS * 4}")
    return np.memmap(path, dtype=np.uint8, mode="r", offset=HEADER_INTS * 4, shape=(n,))


def index_sequences(paths, chunk=1 << 24):
    """Find every sequence in the shards: returns (shards, seqs) with seqs an (N, 3) int64 array of
    (shard index, start, end) token offsets. Scans in chunks, so memory stays at the index size.

    Raises ShardError (a ValueError) naming the file if a shard is empty, does not start with <cls>, holds
    ids >= 33, or has a sequence that does not end with <eos> (a cheap check of the data at start).
    """
    shards, rows = [], []
    for k, path in enumerate(paths):
        toks = open_shard(path)
        if len(toks) == 0 or toks[0] != CLS:
            raise ShardError(f"{path}: a shard must start with <cls> (sequences are <cls> residues <eos>)")
        starts = []
        for a in range(0, len(toks), chunk):
            block = np.asarray(toks[a:a + chunk])
            if block.max() >= V:
                raise ShardError(f"{path}: token id {block.max()} near offset {a} is outside the vocabulary")
            starts.append(np.flatnonzero(block == CLS) + a)
        starts = np.concatenate(starts)
        ends = np.append(starts[1:], len(toks))
        bad = np.flatnonzero(toks[ends - 1] != EOS)  # reads one byte per sequence
        if len(bad):
            raise ShardError(f"{path}: the sequence at token offset {starts[bad[0]]} does not end with <eos> "
                             f"({len(bad)} such sequences); check the shards with: python data/check.py")
        rows.append(np.stack([np.full_like(starts, k), starts, ends], 1))
        shards.append(toks)
    return shards, np.concatenate(rows).astype(np.int64)


def resolve_files(pattern, what):
    paths = sorted(glob.glob(pattern))
    if not paths:
        name = os.path.basename(pattern)
        how = ("python ../shared/bench/make_reference_shards.py ../shared/data/proteins data/reference reference "
               "40000000" if name.startswith("reference_") else "python data/prepare.py --sample"
               if name.startswith("sample_") else "python data/prepare.py --help")
        raise FileNotFoundError(f"no {what} shards match {pattern!r} (build them with: {how})")
    return paths


def crop(seq, max_length, rng):
    """Random window of max_length tokens; <cls>/<eos> stay only where the window touches the real ends."""
    if len(seq) <= max_length:
        return seq
    a = int(rng.integers(0, len(seq) - max_length + 1))
    return seq[a:a + max_length]


ATTN_BLOCK = 64  # tokens: micro-batches are packed, and attention's key ranges kept, in blocks of this many


def block_order(lengths, block=ATTN_BLOCK):
    """Order in which to pack one micro-batch's sequences: list of int lengths -> list of their indices.

    Document-masked attention (doc_attention, as FlexAttention before it) computes every (block x block) tile
    in which two tokens share a sequence, so a sequence that straddles a block boundary costs tiles of its
    neighbours. Greedy, longest first: next comes the longest remaining sequence that ends exactly on a
    multiple of `block`, else the longest one. On the reference shards 86% of the computed 64-token tiles'
    entries are within one sequence, against 75% in stream order (128-token tiles: 73% and 59%;
    records/2026-11-30_Flex64/tile_use.py). Order within a micro-batch changes no loss: attention never crosses
    sequences and positions restart in each. Deterministic (ties keep their order)."""
    rest = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    by_end = defaultdict(list)  # length % block -> indices, longest first
    for i in rest:
        by_end[lengths[i] % block].append(i)
    taken, out, pos = set(), [], 0
    for _ in range(len(lengths)):
        fits = by_end[-pos % block]
        while fits and fits[0] in taken:
            fits.pop(0)
        if not fits:
            while rest[0] in taken:
                rest.pop(0)
        i = fits.pop(0) if fits else rest.pop(0)
        taken.add(i)
        out.append(i)
        pos += lengths[i]
    return out


class PackedLoader:
    """Packs whole sequences into fixed-size micro-batches; a background thread runs ahead of the GPU.

    One global stream of micro-batches, the same for any number of GPUs: each pass over the data is a seeded
    permutation of all sequences, cut in order into micro-batches (a sequence that no longer fits starts the
    next one), each packed in block_order (the tail is padding, cut in pieces of max_length), and global
    micro-batch g goes to rank g % world_size. So ranks never share a sequence, none is skipped, a pass
    boundary costs one permutation (no stall), and W GPUs with accumulation A train on exactly the
    micro-batches of one GPU with accumulation W x A. next() yields (tokens (T,) int64, starts (T,) bool
    (True at the first token of each sequence and of the padding), g) on `device`; host-side stats in
    self.last: real tokens and sum of squared sequence lengths of the group of W micro-batches it belongs to
    (one per rank: summed over a step, the step's totals over all ranks). `position` = (pass, index into its
    permutation, next global micro-batch) after the last group taken is all a checkpoint needs to resume the
    stream exactly (`start`).
    """

    def __init__(self, paths, cfg, rank, world_size, device, seed, start=(0, 0, 0)):
        self.shards, self.seqs = index_sequences(paths)
        self.T, self.max_length = cfg.tokens_per_micro_batch, cfg.max_length
        self.rank, self.world, self.seed, self.device = rank, world_size, seed, device
        self.position = tuple(start)
        self.queue = queue.Queue(maxsize=8)
        self.thread = threading.Thread(target=self._fill, daemon=True)
        self.thread.start()

    def batches(self, start=(0, 0, 0)):
        """Host-side generator of this rank's (tokens uint8 (T,), starts bool (T,), g, real_tokens,
        sum_sq_lengths, position after its group), beginning at position `start`. Every rank packs the whole
        stream (cheap host work), fills only its own micro-batches, and yields each one when its group of W
        (g // W, one micro-batch per rank) is complete, with the real tokens and sum of squared lengths of
        the whole group: so every rank counts the tokens of all ranks, with no communication."""
        epoch, first, g = start
        T, W, L = self.T, self.world, self.max_length
        real = sumsq = 0  # of the current group
        mine = None  # this rank's finished micro-batch of the current group (a group may span two passes)
        while True:
            order = np.random.default_rng([self.seed, epoch]).permutation(len(self.seqs))
            pieces = []  # this rank's sequences of micro-batch g (cropped), in stream order
            pos = batch_sumsq = 0
            for j in range(first, len(order) + 1):
                end = j == len(order)  # the last micro-batch of a pass is padded, not merged with the next pass
                k, a, b = self.seqs[order[j]] if not end else (0, 0, 0)
                n = int(min(b - a, L))
                if pos and (end or pos + n > T):  # micro-batch g is complete (a sequence that no longer fits
                    # starts the next)
                    real, sumsq = real + pos, sumsq + batch_sumsq
                    if g % W == self.rank:
                        tokens, starts, at = np.full(T, PAD, np.uint8), np.zeros(T, bool), 0
                        for i in block_order([len(p) for p in pieces]):
                            tokens[at:at + len(pieces[i])], starts[at] = pieces[i], True
                            at += len(pieces[i])
                        starts[at::L] = True  # padding: pieces of at most max_length
                        mine, pieces = (tokens, starts, g), []
                    if g % W == W - 1:
                        yield *mine, real, sumsq, (epoch, j, g + 1)
                        real = sumsq = 0
                    g, pos, batch_sumsq = g + 1, 0, 0
                if end:
                    break
                if g % W == self.rank:  # only this rank's micro-batches are filled
                    seq = self.shards[k][a:b]
                    if len(seq) > L:  # the window depends only on (seed, pass, sequence)
                        seq = crop(seq, L, np.random.default_rng([self.seed, epoch, order[j]]))
                    pieces.append(seq)
                pos, batch_sumsq = pos + n, batch_sumsq + n * n
            epoch, first = epoch + 1, 0

    def _fill(self):
        pin = self.device.type == "cuda"
        try:
            for tokens, starts, g, real, sumsq, position in self.batches(self.position):
                t = torch.from_numpy(np.stack([tokens, starts.astype(np.uint8)]))
                self.queue.put((t.pin_memory() if pin else t, real, sumsq, g, position))
        except Exception as e:  # handed to the training loop, which raises it (a dead thread would hang it)
            self.queue.put(e)

    def next(self):
        """Next micro-batch: (tokens (T,) int64, starts (T,) bool) on the device, copied without blocking,
        and its global index g (an int: seeds its training mask)."""
        item = self.queue.get()
        if isinstance(item, Exception):
            raise RuntimeError(f"the data loader failed: {item!r}") from item
        t, real, sumsq, g, self.position = item
        self.last = (real, sumsq)
        t = t.to(self.device, non_blocking=True)
        return t[0].long(), t[1].bool(), g


# ----------------------------------------------------------------------------------------------------------
# Masking, on the device: MLM (80/10/10) or masked diffusion (a rate t per sequence).


def mask_tokens(tokens, mask_rate, generator, bert=True):
    """MLM masking (BERT, Devlin et al. 2019): each residue (ids 4-28) is selected with prob. mask_rate; of
    the selected, 80% become <mask>, 10% a random canonical amino acid, 10% stay (bert=False: all become
    <mask>, the validation protocol's corruption). <cls>/<eos>/<pad> are never selected. tokens: (T,) int64.
    Returns inputs (T,) int64 and labels (T,) int64 (-100 where not selected).
    """
    is_residue = (tokens >= RESIDUES.start) & (tokens < RESIDUES.stop)
    selected = is_residue & (torch.rand(tokens.shape, device=tokens.device, generator=generator) < mask_rate)
    labels = torch.where(selected, tokens, -100)
    if not bert:
        return torch.where(selected, MASK, tokens), labels
    r = torch.rand(tokens.shape, device=tokens.device, generator=generator)
    random_aa = torch.randint(CANONICAL.start, CANONICAL.stop, tokens.shape, device=tokens.device,
                              generator=generator)
    inputs = torch.where(selected & (r < 0.8), MASK, tokens)
    inputs = torch.where(selected & (r >= 0.8) & (r < 0.9), random_aa, inputs)
    return inputs, labels


def prediction_capacity(tokens, rate):
    """Rows of the last block's output that MLM's loss reads per micro-batch of `tokens` tokens, at mask rate
    `rate`: the mean count of Binomial(tokens, rate) plus 8 standard deviations (a micro-batch draws more about
    once in 10^15), rounded up to a multiple of 128 (MLPFP8's row unit). None where that is not below `tokens`
    (no rows to save); 0 at rate 0 (nothing is scored; training then keeps every row, as for None)."""
    c = rate * tokens + 8 * math.sqrt(tokens * rate * (1 - rate))
    c = -(-math.ceil(c) // 128) * 128
    return c if c < tokens else None


def prediction_rows(labels, capacity):
    """labels (T,) int64 (-100: unscored) -> (rows (capacity,) int64, lost () int64). rows: the scored positions
    in order, then the first unscored ones up to capacity, all distinct (a stable sort of the unscored flag; no
    host sync); lost: scored positions left out (0 unless the masking drew more than capacity; the caller must
    check it). Sparse prediction, as NVIDIA's BERT pretraining computes the MLM head at masked positions only."""
    scored = labels != -100
    rows = torch.sort((~scored).to(torch.uint8), stable=True).indices[:capacity]
    return rows, (scored.sum() - capacity).clamp_min(0)


GOLDEN = 0.6180339887498949  # Weyl sequence frac(u + i * GOLDEN): low-discrepancy draws, no count needed


def diffusion_mask(tokens, starts, t_lo, t_hi, generator):
    """Masked diffusion masking (MDLM, Sahoo et al. 2024; LLaDA, Nie et al. 2025; DSM for protein language
    models, Hallee et al. 2025), per sequence of a packed batch.

    Sequence i (counted by `starts`) draws its own rate t_i = t_lo + (t_hi - t_lo) * frac(u + i * GOLDEN)
    (one uniform u per batch; the Weyl sequence spreads the t_i evenly, like MDLM's low-discrepancy sampler,
    without a host sync), and each of its residues (ids 4-28) becomes <mask> with probability t_i (always
    <mask>, no 80/10/10). At least one residue per sequence is masked: the one with the lowest draw.
    tokens: (T,) int64, starts: (T,) bool. Returns inputs (T,) int64, labels (T,) int64 (-100 = unmasked) and
    weights (T,) float32 = 1 / (t_i * residues in the batch) on masked positions, 0 elsewhere, so that
    sum(weights * cross-entropy) is the negative ELBO per residue (the continuous-time bound: masked CE / t).
    """
    doc = torch.cumsum(starts.int(), 0) - 1
    offset = torch.rand((), device=tokens.device, generator=generator)
    t = t_lo + (t_hi - t_lo) * torch.frac(offset + doc.double() * GOLDEN).float()  # (T,): its sequence's t
    is_residue = (tokens >= RESIDUES.start) & (tokens < RESIDUES.stop)
    u = torch.where(is_residue, torch.rand(tokens.shape, device=tokens.device, generator=generator), 2.0)
    lowest = torch.full_like(u, 2.0).scatter_reduce(0, doc, u, "amin")[doc]
    masked = is_residue & ((u < t) | (u == lowest))
    inputs = torch.where(masked, MASK, tokens)
    labels = torch.where(masked, tokens, -100)
    weights = torch.where(masked, 1.0 / (t * is_residue.sum().clamp_min(1)), 0.0)
    return inputs, labels, weights


def diffusion_t_range(step, cfg):
    """(t_lo, t_hi) of the masking rate at a step: diffusion [t_min, 1]; mlm_to_diffusion (which trains MLM
    before step mlm_steps): the point mask_rate at mlm_steps, widening linearly to [t_min, 1] over
    widen_steps steps."""
    if cfg.objective == "diffusion":
        return cfg.diffusion_t_min, 1.0
    f = min(max(step - cfg.mlm_steps, 0) / max(cfg.widen_steps, 1), 1.0)
    return cfg.mask_rate + f * (cfg.diffusion_t_min - cfg.mask_rate), cfg.mask_rate + f * (1.0 - cfg.mask_rate)


# ----------------------------------------------------------------------------------------------------------
# Model: pre-norm transformer encoder with RMSNorm, RoPE, QK-norm, ReLU² MLP, value embeddings, U-net skips.

from torch._inductor.choices import InductorChoices
from torch._inductor.runtime.hints import ReductionHint

# inductor's deterministic mode: kernel variants chosen by heuristics, never by timing them (a timed choice, such
# as padding a product or a reduction's tile, can differ between machines, runs and ranks, and with it a sum's
# order). A compile option, not the global flag: dynamo resets that after compiling each frame, when it restores
# torch.use_deterministic_algorithms, which sets it (torch 2.11-2.13; records/2026-11-30_InductorDeterministic)
INDUCTOR_OPTIONS = {"deterministic": True}


def norm(x):
    return F.rms_norm(x, (x.size(-1),))


def document_ids(starts):
    """starts (T,) bool -> (doc (T,) int32: sequence index of each token, pos (T,) int64: position in it)."""
    idx = torch.arange(starts.numel(), device=starts.device)
    doc = torch.cumsum(starts.int(), 0, dtype=torch.int32) - 1
    # doc never decreases: a binary search finds each sequence's first token (torch's cummax took 0.22 ms per
    # call on an H200, records/2026-12-01_SequenceIndexSearch)
    return doc, idx - torch.searchsorted(doc, doc)


def document_ranges(doc, pos, window=0):
    """Where doc_attention looks for each block's keys. doc (T,) int32 and pos (T,) int64 from document_ids, T a
    multiple of ATTN_BLOCK -> (doc, lo, hi), lo and hi (T / ATTN_BLOCK,) int32 multiples of ATTN_BLOCK: every
    key that a query of block b may see (same sequence, and |q - k| <= window if window > 0) lies in tokens
    [lo[b], hi[b]). Sequences are contiguous, so that is one range, and by symmetry it also holds every query
    that may see a key of block b. Once per micro-batch, shared by all layers."""
    T, B = doc.numel(), ATTN_BLOCK
    if T % B:
        raise ValueError(f"document_ranges: {T} tokens is not a multiple of ATTN_BLOCK ({B})")
    idx = torch.arange(T, device=doc.device)
    end = torch.searchsorted(doc, doc, right=True)  # one past each token's sequence (doc never decreases)
    lo, hi = (idx - pos)[::B], end[B - 1::B]  # block b's first sequence's first token; its last one's end
    if window:
        lo, hi = torch.maximum(lo, idx[::B] - window), torch.minimum(hi, idx[::B] + B + window)
    return doc, (lo // B * B).int(), ((hi + B - 1) // B * B).int()


class KernelChoices(InductorChoices):
    """torch.compile's kernel choices for this model, through inductor's extension point: an InductorChoices
    class in torch._inductor.config.inductor_choices_class, which train() sets (a config, not a handler: the
    backward compiles in autograd's device thread, and handlers are per thread; torch 2.13 carries the config
    of the thread that calls backward there). Row reductions up to 2,048 wide run persistent (whole row in
    registers), not only those up to 1,024: with FP8, the MLP's 1,536-wide rows, whose ReLU² kernels (forward
    and backward) find the row amax and cast. One fixed choice, never timed: the same kernels, and bits, on
    every run and rank."""

    @staticmethod
    def should_use_persistent_reduction(features, cooperative_reduction):
        n = features.reduction_numel
        if (torch._inductor.config.triton.persistent_reductions and features.get_reduction_hint() == ReductionHint.INNER
                and getattr(n, "is_number", True) and int(n) <= 2048):
            return True
        return InductorChoices.should_use_persistent_reduction(features, cooperative_reduction)

    def uuid(self):  # inductor's cache key holds this, not the code: it names the choice made above
        return "train_plm.KernelChoices persistent INNER rows <= 2048"


def window_mask(n, window, device):
    """(n, n) bool, True where |q - k| <= window (None when window is 0: no limit)."""
    if not window:
        return None
    idx = torch.arange(n, device=device)
    return (idx[:, None] - idx[None, :]).abs() <= window


def segment_attention(q, k, v, lengths, window):
    """The fallback (CPU; a GPU without Triton, or a head size not in ATTN_HEAD_DIMS), mathematically the same
    as doc_attention: plain scaled_dot_product_attention on each sequence's slice. q, k, v: (1, H, T, d);
    lengths: list of sequence lengths (the padding counts as sequences) summing to T. Costs sum(n²) instead
    of T² of a dense mask."""
    pieces = zip(q.split(lengths, 2), k.split(lengths, 2), v.split(lengths, 2))  # split: cheap backward
    return torch.cat([F.scaled_dot_product_attention(a, b, c, attn_mask=window_mask(a.size(2), window, q.device))
                      for a, b, c in pieces], dim=2)


def rotary(x, cos, sin):
    """RoPE (Su et al. 2021) on x (T, H, d) with cos/sin (T, 1, d/2)."""
    x1, x2 = x.float().chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1).type_as(x)


def sum_by_index(g, idx, rows):
    """Rows of g (T, D) summed per index: idx (T,) int64 in [0, rows) -> (rows, D) in g's dtype, out[i] = the sum
    of g[t] over the t with idx[t] == i. Ids outside [0, rows) are not checked (a check would sync the GPU) and
    add to no row: the model's ids are token ids from encode(), all in [0, V). A product with the one-hot
    matrix (exact 0/1 operands, fp32 accumulation): deterministic, where index_add_'s atomic adds sum in a
    different order each run (records/2026-11-30_Deterministic). Rows padded to a multiple of 64, so cuBLAS gets
    aligned operands (with 33 it ran a slow sm75 kernel)."""
    n = -(-rows // 64) * 64
    onehot_t = (torch.arange(n, device=idx.device)[:, None] == idx[None, :]).to(g.dtype)  # (n, T)
    return (onehot_t @ g)[:rows]


class GatherRows(torch.autograd.Function):
    """table (V, D)[idx (T,) int64] -> (T, D): an embedding lookup. The backward is sum_by_index (deterministic).
    Inside a compiled block the lookup fuses into the kernel that reads it: the block reads the 33-row table,
    not a (T, D) tensor, and its gradient needs no (T, D) sum across blocks."""

    @staticmethod
    def forward(ctx, table, idx):
        ctx.save_for_backward(idx)
        ctx.rows = table.size(0)
        return table[idx]

    @staticmethod
    def backward(ctx, g):
        (idx,) = ctx.saved_tensors
        return sum_by_index(g, idx, ctx.rows), None


def qkv_prep_reference(qkv, ve, lam, cos, sin, heads):
    """What attention does to the qkv product before attending, in plain PyTorch (CPU, and the test of
    the fused kernel): q, k = RoPE(RMSNorm(.)) (QK-norm: Henry et al. 2020, Dehghani et al. 2023), v mixed
    with the value embedding ve (T, D) as lam[0] * v + lam[1] * ve (skipped when ve is None).
    qkv (T, 3D) -> q, k, v (T, H, D/H) in qkv's dtype."""
    T = qkv.size(0)
    q, k, v = qkv.view(T, 3 * heads, -1).chunk(3, 1)
    if ve is not None:  # value embeddings (modded-nanogpt): token-identity shortcut into the values
        v = (lam[0] * v + lam[1] * ve.view_as(v)).type_as(v)
    return rotary(norm(q), cos, sin).type_as(v), rotary(norm(k), cos, sin).type_as(v), v


try:  # Triton ships with CUDA builds of torch; its kernels run only on CUDA tensors (the tests run them under
    # Triton's CPU interpreter), elsewhere qkv_prep_reference and segment_attention
    import triton
    import triton.language as tl
    from triton.tools.tensor_descriptor import TensorDescriptor
except ImportError:
    triton = None

# the fused QK-norm / RoPE / value-embedding kernels' tiles: (tokens per program, warps), each program one head;
# the fastest of a sweep on a reference micro-batch, H200 (records/2026-12-01_QKVPrepTiles, _QKVPrepForward8Warps)
QKV_PREP_TILES = {"forward": (64, 8), "backward": (64, 8)}
# the ops' namespace is this source's hash: a re-import reuses them, another version of the file gets its own
OPS = f"plm_{hashlib.sha256(SOURCE.encode()).hexdigest()[:12]}"
# doc_attention's tiles: (tokens per program, tokens per loop step, warps, software-pipeline stages) for the
# forward (queries, keys), the dK/dV pass (keys, queries) and the dQ pass (queries, keys). A loop step must
# divide ATTN_BLOCK (the key ranges' unit). The fastest of 15 or more sets each on a reference micro-batch, H200
# (records/2026-11-30_DocAttention)
ATTN_TILES = {"forward": (64, 64, 4, 3), "dkdv": (64, 64, 4, 2), "dq": (64, 64, 4, 2)}
ATTN_HEAD_DIMS = (16, 32, 64, 128)  # head sizes doc_attention's tiles are built for (tl.dot needs >= 16)

if triton is not None and not hasattr(getattr(torch.ops, OPS), "qkv_prep"):
    # QK-norm + RoPE + value-embedding mix as one kernel each way. torch.compile's own kernels for these
    # loop over the 128-wide rows and spill fp32 intermediates (the q/k rows of the fused qkv product are
    # not contiguous): 95 ms of a 1.17 s reference step on an H200 (records/2026-11-30_FusedQKVPrep).
    # Each program owns a block of tokens of one head (QKV_PREP_TILES): no atomics, the same bits every run.

    @triton.jit
    def _norm_rope(src, dst, c, s, half, live, EPS: tl.constexpr, HD: tl.constexpr):
        """Rows src (BLOCK, HD) -> dst: RMSNorm, then RoPE on the halves (x1, x2), in fp32."""
        x1 = tl.load(src + half, mask=live).to(tl.float32)
        x2 = tl.load(src + HD // 2 + half, mask=live).to(tl.float32)
        r = tl.rsqrt((tl.sum(x1 * x1, 1) + tl.sum(x2 * x2, 1))[:, None] / HD + EPS)
        tl.store(dst + half, ((x1 * c - x2 * s) * r).to(dst.dtype.element_ty), mask=live)
        tl.store(dst + HD // 2 + half, ((x1 * s + x2 * c) * r).to(dst.dtype.element_ty), mask=live)

    @triton.jit
    def _norm_rope_grad(src, grad, dst, c, s, half, live, EPS: tl.constexpr, HD: tl.constexpr):
        """_norm_rope's backward: the rows' input src and output gradient grad -> input gradient dst."""
        x1 = tl.load(src + half, mask=live).to(tl.float32)
        x2 = tl.load(src + HD // 2 + half, mask=live).to(tl.float32)
        r = tl.rsqrt((tl.sum(x1 * x1, 1) + tl.sum(x2 * x2, 1))[:, None] / HD + EPS)
        g1 = tl.load(grad + half, mask=live).to(tl.float32)
        g2 = tl.load(grad + HD // 2 + half, mask=live).to(tl.float32)
        n1, n2 = x1 * r, x2 * r
        dn1, dn2 = g1 * c + g2 * s, g2 * c - g1 * s  # RoPE's transpose: the inverse rotation
        m = (tl.sum(dn1 * n1, 1) + tl.sum(dn2 * n2, 1))[:, None] / HD  # RMSNorm's backward
        tl.store(dst + half, (r * (dn1 - n1 * m)).to(dst.dtype.element_ty), mask=live)
        tl.store(dst + HD // 2 + half, (r * (dn2 - n2 * m)).to(dst.dtype.element_ty), mask=live)

    @triton.jit
    def _qkv_prep_fwd(qkv, tok, ve, lam, cos, sin, q, k, v, T, EPS: tl.constexpr, H: tl.constexpr,
                      HD: tl.constexpr, HAS_VE: tl.constexpr, BLOCK: tl.constexpr):
        j = tl.program_id(0)  # head; consecutive programs share tokens (and their cos, sin)
        t = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)[:, None]
        half, col, live = tl.arange(0, HD // 2)[None, :], tl.arange(0, HD)[None, :], t < T
        c = tl.load(cos + t * (HD // 2) + half, mask=live)
        s = tl.load(sin + t * (HD // 2) + half, mask=live)
        row, out = qkv + t * (3 * H * HD), t * (H * HD) + j * HD
        _norm_rope(row + j * HD, q + out, c, s, half, live, EPS, HD)
        _norm_rope(row + (H + j) * HD, k + out, c, s, half, live, EPS, HD)
        x = tl.load(row + (2 * H + j) * HD + col, mask=live).to(tl.float32)
        if HAS_VE:
            e = tl.load(ve + tl.load(tok + t, mask=live) * (H * HD) + j * HD + col, mask=live).to(tl.float32)
            x = tl.load(lam) * x + tl.load(lam + 1) * e
        tl.store(v + out + col, x.to(v.dtype.element_ty), mask=live)

    @triton.jit
    def _qkv_prep_bwd(qkv, tok, ve, lam, cos, sin, dq, dk, dv, dqkv, dve, dlam, T, EPS: tl.constexpr,
                      H: tl.constexpr, HD: tl.constexpr, HAS_VE: tl.constexpr, BLOCK: tl.constexpr):
        j, pid = tl.program_id(0), tl.program_id(1)
        t = pid * BLOCK + tl.arange(0, BLOCK)[:, None]
        half, col, live = tl.arange(0, HD // 2)[None, :], tl.arange(0, HD)[None, :], t < T
        c = tl.load(cos + t * (HD // 2) + half, mask=live)
        s = tl.load(sin + t * (HD // 2) + half, mask=live)
        row, drow, out = qkv + t * (3 * H * HD), dqkv + t * (3 * H * HD), t * (H * HD) + j * HD
        _norm_rope_grad(row + j * HD, dq + out, drow + j * HD, c, s, half, live, EPS, HD)
        _norm_rope_grad(row + (H + j) * HD, dk + out, drow + (H + j) * HD, c, s, half, live, EPS, HD)
        g = tl.load(dv + out + col, mask=live).to(tl.float32)
        if HAS_VE:  # this program's share of the lambdas' gradients, summed in program order outside
            x = tl.load(row + (2 * H + j) * HD + col, mask=live).to(tl.float32)
            e = tl.load(ve + tl.load(tok + t, mask=live) * (H * HD) + j * HD + col, mask=live).to(tl.float32)
            tl.store(dlam + 2 * (pid * H + j), tl.sum(tl.sum(g * x, 1), 0))
            tl.store(dlam + 2 * (pid * H + j) + 1, tl.sum(tl.sum(g * e, 1), 0))
            tl.store(dve + t * (H * HD) + j * HD + col, (tl.load(lam + 1) * g).to(dve.dtype.element_ty), mask=live)
            g = tl.load(lam) * g
        tl.store(drow + (2 * H + j) * HD + col, g.to(dqkv.dtype.element_ty), mask=live)

    @torch.library.triton_op(f"{OPS}::qkv_prep", mutates_args=())
    def _qkv_prep_op(qkv: torch.Tensor, tok: torch.Tensor, ve: torch.Tensor | None, lam: torch.Tensor,
                     cos: torch.Tensor, sin: torch.Tensor,
                     heads: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        T, hd = qkv.size(0), qkv.size(1) // (3 * heads)
        q, k, v = (qkv.new_empty(T, heads, hd) for _ in range(3))
        block, warps = QKV_PREP_TILES["forward"]
        torch.library.wrap_triton(_qkv_prep_fwd)[(heads, triton.cdiv(T, block))](
            qkv, tok, qkv if ve is None else ve, lam, cos, sin, q, k, v, T,
            torch.finfo(torch.float32).eps, heads, hd, ve is not None, block, num_warps=warps)
        return q, k, v

    @torch.library.triton_op(f"{OPS}::qkv_prep_backward", mutates_args=())
    def _qkv_prep_backward_op(dq: torch.Tensor, dk: torch.Tensor, dv: torch.Tensor, qkv: torch.Tensor,
                              tok: torch.Tensor, ve: torch.Tensor | None, lam: torch.Tensor, cos: torch.Tensor,
                              sin: torch.Tensor, heads: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        T, hd = qkv.size(0), qkv.size(1) // (3 * heads)
        block, warps = QKV_PREP_TILES["backward"]
        programs = triton.cdiv(T, block)
        dqkv = torch.empty_like(qkv)
        dve = qkv.new_empty(T, heads * hd, dtype=qkv.dtype if ve is None else ve.dtype)  # unused without ve
        dlam = lam.new_zeros(programs * heads, 2)
        torch.library.wrap_triton(_qkv_prep_bwd)[(heads, programs)](
            qkv, tok, qkv if ve is None else ve, lam, cos, sin, dq.contiguous(),
            dk.contiguous(), dv.contiguous(), dqkv, dve, dlam, T, torch.finfo(torch.float32).eps, heads, hd,
            ve is not None, block, num_warps=warps)
        return dqkv, dve, dlam.sum(0)

    def _qkv_prep_setup(ctx, inputs, output):
        qkv, tok, ve, lam, cos, sin, heads = inputs
        ctx.save_for_backward(qkv, tok, ve, lam, cos, sin)
        ctx.heads = heads

    def _qkv_prep_grad(ctx, dq, dk, dv):
        qkv, tok, ve, lam, cos, sin = ctx.saved_tensors
        dqkv, dve, dlam = getattr(torch.ops, OPS).qkv_prep_backward(dq, dk, dv, qkv, tok, ve, lam, cos, sin, ctx.heads)
        if ve is None:
            return dqkv, None, None, None, None, None, None
        return dqkv, None, sum_by_index(dve, tok, ve.size(0)), dlam, None, None, None

    torch.library.register_autograd(f"{OPS}::qkv_prep", _qkv_prep_grad, setup_context=_qkv_prep_setup)

    # Attention within each sequence of a packed micro-batch: FlashAttention-2's algorithm (Dao 2023) over each
    # block's key range [lo, hi) (document_ranges). The token-level mask (same sequence, window) is applied only in
    # tiles that hold two sequences (FlexAttention's partial blocks). The forward keeps the log-sum-exp per
    # query (base 2); the backward runs as in Triton's fused attention tutorial: one pass of programs per query
    # block for dQ, then one per key block for dK, dV, each summing over the other side in its own registers
    # (no atomics: the same bits every run). Slower, measured: dS stored by the dK/dV pass for a dQ pass of one
    # product per tile, two heads per program (records/2026-12-01_QKVPrepForward8Warps), one fused backward pass
    # per region of chained sequences, loops rotated to issue the next tile's products before this tile's
    # softmax (records/2026-12-01_FusionLimits), and one pass whose key blocks add each query tile's dQ in turn
    # (records/2026-12-01_BackwardEpilogues).

    @triton.jit
    def _attn_mask(doc_q, doc_k, tq, tk, WINDOW: tl.constexpr):
        """(queries, keys) bool: same sequence, and |q - k| <= WINDOW if WINDOW > 0."""
        same = doc_q[:, None] == doc_k[None, :]
        if WINDOW > 0:
            same = same & (tl.abs(tq[:, None] - tk[None, :]) <= WINDOW)
        return same

    @triton.jit
    def _attn_full(DOC, tq0, tk0, BM: tl.constexpr, BN: tl.constexpr, WINDOW: tl.constexpr):
        """Whether the tile of queries [tq0, tq0 + BM) and keys [tk0, tk0 + BN) needs no mask: all its tokens in one
        sequence (doc ids never decrease along the row, so two comparisons decide it) and within WINDOW."""
        full = (tl.load(DOC + tq0) == tl.load(DOC + tk0 + BN - 1)) & (tl.load(DOC + tk0) == tl.load(DOC + tq0 + BM - 1))
        if WINDOW > 0:
            full = full & (tl.maximum(tq0 + BM - 1 - tk0, tk0 + BN - 1 - tq0) <= WINDOW)
        return full

    @triton.jit
    def _attn_fwd(Q, K, V, O, LSE, DOC, LO, HI, T, QK_SCALE: tl.constexpr, WINDOW: tl.constexpr, H: tl.constexpr,
                  HD: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, RB: tl.constexpr):
        h, mb = tl.program_id(0), tl.program_id(1)
        tq, col = mb * BM + tl.arange(0, BM), tl.arange(0, HD)[None, :]
        q = tl.load(Q + tq[:, None] * (H * HD) + h * HD + col)
        m_i = tl.full([BM], -1.0e30, tl.float32)  # finite: a row may meet no key of its own in a tile
        l_i = tl.zeros([BM], tl.float32)
        acc = tl.zeros([BM, HD], tl.float32)
        for start in tl.range(tl.load(LO + mb * BM // RB), tl.load(HI + (mb * BM + BM - 1) // RB), BN):
            tk = start + tl.arange(0, BN)
            k = tl.load(K + tk[:, None] * (H * HD) + h * HD + col)
            s = tl.dot(q, tl.trans(k))
            if not _attn_full(DOC, mb * BM, start, BM, BN, WINDOW):  # most tiles lie inside one sequence
                s = tl.where(_attn_mask(tl.load(DOC + tq), tl.load(DOC + tk), tq, tk, WINDOW), s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 1) * QK_SCALE)
            p = tl.exp2(s * QK_SCALE - m_new[:, None])
            alpha = tl.exp2(m_i - m_new)
            l_i = l_i * alpha + tl.sum(p, 1)
            v = tl.load(V + tk[:, None] * (H * HD) + h * HD + col)
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
            m_i = m_new
        tl.store(O + tq[:, None] * (H * HD) + h * HD + col, (acc / l_i[:, None]).to(O.dtype.element_ty))
        tl.store(LSE + h * T + tq, m_i + tl.log2(l_i))

    @triton.jit
    def _attn_bwd_dq(Q, K, V, O, DO, LSE, DELTA, DOC, LO, HI, DQ, T, QK_SCALE: tl.constexpr, SCALE: tl.constexpr,
                     WINDOW: tl.constexpr, H: tl.constexpr, HD: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr,
                     RB: tl.constexpr):
        """The first backward pass: dQ of 64 queries, and their delta = rowsum(o * do) (fp32, the softmax
        backward's correction), stored for the dK/dV pass."""
        h, mb = tl.program_id(0), tl.program_id(1)
        tq, col = mb * BM + tl.arange(0, BM), tl.arange(0, HD)[None, :]
        at = tq[:, None] * (H * HD) + h * HD + col
        q, do = tl.load(Q + at), tl.load(DO + at)
        lse = tl.load(LSE + h * T + tq)
        delta = tl.sum(tl.load(O + at).to(tl.float32) * do.to(tl.float32), 1)
        tl.store(DELTA + h * T + tq, delta)
        dq = tl.zeros([BM, HD], tl.float32)
        for start in tl.range(tl.load(LO + mb * BM // RB), tl.load(HI + (mb * BM + BM - 1) // RB), BN):
            tk = start + tl.arange(0, BN)
            k = tl.load(K + tk[:, None] * (H * HD) + h * HD + col)
            v = tl.load(V + tk[:, None] * (H * HD) + h * HD + col)
            p = tl.exp2(tl.dot(q, tl.trans(k)) * QK_SCALE - lse[:, None])
            if not _attn_full(DOC, mb * BM, start, BM, BN, WINDOW):
                p = tl.where(_attn_mask(tl.load(DOC + tq), tl.load(DOC + tk), tq, tk, WINDOW), p, 0.0)
            ds = p * (tl.dot(do, tl.trans(v)) - delta[:, None])
            dq += tl.dot(ds.to(k.dtype), k)
        tl.store(DQ + at, (dq * SCALE).to(DQ.dtype.element_ty))

    @triton.jit
    def _attn_bwd_dkdv(Q, K, V, DO, LSE, DELTA, DOC, LO, HI, DK, DV, T, QK_SCALE: tl.constexpr, SCALE: tl.constexpr,
                       WINDOW: tl.constexpr, H: tl.constexpr, HD: tl.constexpr, BN: tl.constexpr, BM: tl.constexpr,
                       RB: tl.constexpr):
        h, nb = tl.program_id(0), tl.program_id(1)
        tk, col = nb * BN + tl.arange(0, BN), tl.arange(0, HD)[None, :]
        k = tl.load(K + tk[:, None] * (H * HD) + h * HD + col)
        v = tl.load(V + tk[:, None] * (H * HD) + h * HD + col)
        dk = tl.zeros([BN, HD], tl.float32)
        dv = tl.zeros([BN, HD], tl.float32)
        for start in tl.range(tl.load(LO + nb * BN // RB), tl.load(HI + (nb * BN + BN - 1) // RB), BM):
            tq = start + tl.arange(0, BM)
            q = tl.load(Q + tq[:, None] * (H * HD) + h * HD + col)
            p_t = tl.exp2(tl.dot(k, tl.trans(q)) * QK_SCALE - tl.load(LSE + h * T + tq)[None, :])  # (keys, queries)
            if not _attn_full(DOC, start, nb * BN, BM, BN, WINDOW):
                p_t = tl.where(_attn_mask(tl.load(DOC + tk), tl.load(DOC + tq), tk, tq, WINDOW), p_t, 0.0)
            do = tl.load(DO + tq[:, None] * (H * HD) + h * HD + col)
            dv += tl.dot(p_t.to(do.dtype), do)
            ds_t = p_t * (tl.dot(v, tl.trans(do)) - tl.load(DELTA + h * T + tq)[None, :])
            dk += tl.dot(ds_t.to(q.dtype), q)
        tl.store(DK + tk[:, None] * (H * HD) + h * HD + col, (dk * SCALE).to(DK.dtype.element_ty))
        tl.store(DV + tk[:, None] * (H * HD) + h * HD + col, dv.to(DV.dtype.element_ty))

    @torch.library.triton_op(f"{OPS}::doc_attention", mutates_args=())
    def _doc_attention_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, doc: torch.Tensor, lo: torch.Tensor,
                          hi: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor]:
        T, H, hd = q.shape
        o, lse = torch.empty_like(q), q.new_empty(H, T, dtype=torch.float32)
        P, N, warps, stages = ATTN_TILES["forward"]
        torch.library.wrap_triton(_attn_fwd)[(H, T // P)](
            q, k, v, o, lse, doc, lo, hi, T, hd ** -0.5 * math.log2(math.e), window, H, hd, P, N, ATTN_BLOCK,
            num_warps=warps, num_stages=stages)
        return o, lse

    @torch.library.triton_op(f"{OPS}::doc_attention_backward", mutates_args=())
    def _doc_attention_backward_op(do: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                   o: torch.Tensor, lse: torch.Tensor, doc: torch.Tensor, lo: torch.Tensor,
                                   hi: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        T, H, hd = q.shape
        do = do.contiguous()
        delta = torch.empty_like(lse)
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        scales = (hd ** -0.5 * math.log2(math.e), hd ** -0.5)
        P, N, warps, stages = ATTN_TILES["dq"]  # first: it also computes delta, which the dK/dV pass reads
        torch.library.wrap_triton(_attn_bwd_dq)[(H, T // P)](
            q, k, v, o, do, lse, delta, doc, lo, hi, dq, T, *scales, window, H, hd, P, N, ATTN_BLOCK,
            num_warps=warps, num_stages=stages)
        P, N, warps, stages = ATTN_TILES["dkdv"]
        torch.library.wrap_triton(_attn_bwd_dkdv)[(H, T // P)](
            q, k, v, do, lse, delta, doc, lo, hi, dk, dv, T, *scales, window, H, hd, P, N, ATTN_BLOCK,
            num_warps=warps, num_stages=stages)
        return dq, dk, dv

    def _doc_attention_setup(ctx, inputs, output):
        q, k, v, doc, lo, hi, window = inputs
        ctx.save_for_backward(q, k, v, *output, doc, lo, hi)
        ctx.window = window

    def _doc_attention_grad(ctx, do, dlse):  # lse is an output for the backward only: dlse is unused
        dq, dk, dv = getattr(torch.ops, OPS).doc_attention_backward(do, *ctx.saved_tensors, ctx.window)
        return dq, dk, dv, None, None, None, None

    torch.library.register_autograd(f"{OPS}::doc_attention", _doc_attention_grad, setup_context=_doc_attention_setup)


def qkv_prep(qkv, tokens, table, lam, cos, sin, heads):
    """qkv_prep_reference's result with ve = table[tokens] (to bf16 rounding: the kernels compute in fp32 and
    round once), by one fused Triton kernel and one for its backward on a GPU with a power-of-two head size d
    (the kernel reads each token's row of the value-embedding table itself; the table's gradient is
    sum_by_index of the rows'); by GatherRows and qkv_prep_reference elsewhere. qkv (T, 3D) bf16 (float32 on
    CPU), tokens (T,) int64 token ids in [0, V) (not checked: the kernel would read outside the table), table
    (V, D) in qkv's dtype or None, lam (2,) float32 (None only without a table), cos/sin (T, 1, d/2) float32 ->
    q, k, v (T, H, d) in qkv's dtype."""
    hd = qkv.size(1) // (3 * heads)
    if triton is None or not qkv.is_cuda or hd & (hd - 1) or hd < 4:
        ve = None if table is None else GatherRows.apply(table, tokens)
        return qkv_prep_reference(qkv, ve, lam, cos, sin, heads)
    if lam is None:
        lam = qkv.new_ones(2, dtype=torch.float32)  # unused without a table
    return getattr(torch.ops, OPS).qkv_prep(qkv.contiguous(), tokens, None if table is None else table.contiguous(),
                                            lam, cos.squeeze(1), sin.squeeze(1), heads)


def doc_attention(q, k, v, doc, lo, hi, window=0):
    """Softmax attention (scale d^-0.5) of each token to the tokens of its own sequence (and within `window`
    positions if window > 0) in a packed micro-batch, by this file's Triton kernels (FlashAttention-2's
    algorithm, Dao 2023): q, k, v (T, H, d) bf16 contiguous, d in ATTN_HEAD_DIMS, T a multiple of ATTN_BLOCK;
    doc, lo, hi from document_ranges -> (T, H, d) bf16. Differentiable; the same bits every run. Against
    FlexAttention with a document block mask on a reference micro-batch (H200): forward + backward kernels 1.08 ms
    against 1.15 ms (records/2026-11-30_DocAttention); with delta inside the dQ pass and no mask in tiles inside
    one sequence (71% of them), 1.086 against 1.101 ms (records/2026-11-30_LookupsInBlocks). Needs CUDA and
    Triton; segment_attention elsewhere.
    Raises ValueError for other shapes (the kernels would read past them)."""
    T, H, d = q.shape
    shaped = all(t.shape == q.shape and t.is_contiguous() for t in (q, k, v))
    if T % ATTN_BLOCK or d not in ATTN_HEAD_DIMS or not shaped:
        raise ValueError(f"doc_attention: q, k, v must be contiguous (T, H, d) with T a multiple of {ATTN_BLOCK} and d "
                         f"in {ATTN_HEAD_DIMS}; got {[tuple(t.shape) for t in (q, k, v)]}")
    return getattr(torch.ops, OPS).doc_attention(q, k, v, doc, lo, hi, window)[0]


E4M3_MAX = 448.0  # float8_e4m3fn's largest finite value
FP8_BLOCK = 128  # block scaling: one scale per 1 x 128 values of an activation row, per 128 x 128 of a weight
# the MLP's FP8 kernel's tiles (rows, columns, K step, rows of tiles per group, pipeline stages, warps): the fastest
# of a sweep on the reference shapes, H200 (records/2026-12-01_MLPEpilogue)
MLP_FP8_TILES = {"forward": (128, 256, 128, 8, 3, 8), "backward": (128, 128, 128, 8, 4, 8)}


def fp8_rowwise(t):
    """t (M, K) float -> (t8 (M, K) float8_e4m3fn, contiguous; scale (M, 1) float32) with t ~ t8 * scale: each
    row's largest |value| maps to 448, e4m3's largest (FP8 formats: Micikevicius et al. 2022; one scale per row
    as in torchao's float8 "rowwise" recipe). An all-zero row gets a tiny scale and stays zero."""
    scale = t.abs().amax(-1, keepdim=True).float().clamp_min(1e-30) / E4M3_MAX
    return (t.float() / scale).to(torch.float8_e4m3fn).contiguous(), scale


def fp8_blocks(t):
    """t (..., N, K) float, N and K multiples of 128 -> (t8 (..., N, K) float8_e4m3fn, contiguous; scale (..., N / 128,
    K / 128) float32, contiguous) with t ~ t8 * scale per 128 x 128 block, each block's largest |value| at 448
    (DeepSeek-V3's scaling of weights: DeepSeek-AI 2024, arXiv:2412.19437, section 3.3)."""
    *lead, N, K = t.shape
    B = FP8_BLOCK
    blocks = t.float().reshape(*lead, N // B, B, K // B, B)
    scale = blocks.abs().amax((-3, -1)).clamp_min(1e-30) / E4M3_MAX
    return (blocks / scale[..., :, None, :, None]).to(torch.float8_e4m3fn).reshape(*lead, N, K).contiguous(), scale


def fp8_weight(w, kind):
    """The FP8 copies of a weight w (..., N, K) (batched over leading dimensions; no gradient flows through them) that
    a product needs: kind "qkv": (w8, scale) = fp8_rowwise(w in bf16), FP8Linear's forward; "fc": that, plus
    fp8_blocks of w's transpose (MLPFP8's input gradient); "proj": fp8_blocks(w) (MLPFP8's forward), plus
    fp8_rowwise of w's transpose (the product in its backward kernel)."""
    w = w.detach().bfloat16()
    wt = w.transpose(-2, -1)
    return {"qkv": lambda: fp8_rowwise(w), "fc": lambda: fp8_rowwise(w) + fp8_blocks(wt),
            "proj": lambda: fp8_blocks(w) + fp8_rowwise(wt)}[kind]()


def mm_out(a, b, dtype):
    """a @ b in dtype; on CUDA written by the product itself (torch.mm's out_dtype: fp32 weight gradients of bf16
    operands without a bf16 rounding or a cast kernel)."""
    return torch.mm(a, b, out_dtype=dtype) if a.is_cuda else (a @ b).to(dtype)


def fp8_block_mm(a8, sa, b8, sb):
    """a @ b.T of block-scaled e4m3 operands -> (M, N) bf16: a8 (M, K) with sa (M, K / 128), one scale per 1 x 128
    block of a row, sa's stride along M 1 (a transposed (K / 128, M) tensor, as cuBLAS reads it); b8 (N, K) with sb
    (N / 128, K / 128) contiguous, one per 128 x 128 block (fp8_blocks). K / 128 must be a multiple of 4: cuBLAS
    reads those scales in rows padded to 4, which torch's _scaled_mm (2.11) neither pads nor checks
    (records/2026-12-01_FP8QKVBackward). On CUDA cuBLAS's block-scaled product (torch._scaled_mm; CUDA >= 12.9,
    Hopper; fp32 sums rescaled every 128 of K); elsewhere the product of the dequantised operands in float32."""
    if a8.is_cuda:
        return torch._scaled_mm(a8, b8.t(), scale_a=sa, scale_b=sb.t(), out_dtype=torch.bfloat16)
    B = FP8_BLOCK
    a = a8.float() * sa.repeat_interleave(B, 1)
    b = b8.float() * sb.repeat_interleave(B, 0).repeat_interleave(B, 1)
    return (a @ b.t()).bfloat16()


class FP8Linear(torch.autograd.Function):
    """x (M, K) bf16 @ w (N, K).T -> (M, N) bf16, the forward as torch._scaled_mm on fp8_rowwise(x) and w's copy
    w8, ws (fp8_weight's "qkv"); the input gradient g @ w in bf16; the weight gradient g.T @ x of the bf16
    operands, in w's dtype (mm_out; its sum runs over tokens, so row-wise scales of g and x cannot be factored
    out of it). Fast (Hopper) accumulation: these products sum over K <= 1,536. Needs FP8 matrix units on CUDA
    (compute capability >= 8.9; torch._scaled_mm raises RuntimeError elsewhere); torch 2.13 also runs it on CPU
    (the tests)."""

    @staticmethod
    def forward(ctx, x, w, w8, ws):
        x8, xs = fp8_rowwise(x)
        ctx.save_for_backward(x, w)
        return torch._scaled_mm(x8, w8.t(), scale_a=xs, scale_b=ws.t(), out_dtype=x.dtype, use_fast_accum=True)

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        return g @ w.to(g.dtype), mm_out(g.t(), x, w.dtype), None, None


def fp8_1x128(y):
    """y (M, N) bf16 -> (y8 (M, N) float8_e4m3fn, scale (N / 128, M) float32) with y ~ y8 * scale.T per 1 x 128
    block of a row, each block's largest |value| at 448 (DeepSeek-V3's activation scaling, arXiv:2412.19437,
    section 3.3); what _mlp_fp8_kernel's epilogue computes (a product by 448 / amax, not a division per value)."""
    M, N = y.shape
    blocks = y.float().view(M, N // FP8_BLOCK, FP8_BLOCK)
    amax = blocks.abs().amax(-1).clamp_min(1e-30)
    y8 = (blocks * (E4M3_MAX / amax)[..., None]).to(torch.float8_e4m3fn).view(M, N)
    return y8, (amax / E4M3_MAX).t().contiguous()


def mlp_fp8_reference(a8, sa, b8, sb, aux=None):
    """What the op mlp_fp8 computes, in PyTorch (CPU, and the test of its Triton kernel): a8 (M, K) e4m3 with row
    scales sa (M, 1) float32, b8 (N, K) e4m3 with row scales sb (N, 1) -> (y (M, N) bf16, y8, ys = fp8_1x128(y)),
    the product p = (a8 @ b8.T) * sa * sb.T and y = relu(p)² (ReLU²: So et al. 2021) without aux, the MLP's
    forward; with aux (M, N) bf16 = the forward's y, y = p * 2 sqrt(aux) = p * 2 relu(h), ReLU²'s backward (the
    derivative from relu(h)² itself: h is not kept)."""
    p = (a8.float() @ b8.float().t()) * sa * sb.t()
    y = (p.clamp_min(0).square() if aux is None else p * (2 * aux.float().sqrt())).bfloat16()
    return (y, *fp8_1x128(y))


if triton is not None:
    # ReLU² (or its backward) and the casts to e4m3 in the epilogue of the FP8 product that makes their input: the
    # MLP's hidden activations go to memory once per direction, instead of a product's bf16 output that a pass of
    # its own reads back (0.449 -> 0.362 ms forward, 0.485 -> 0.445 ms backward per block and micro-batch, with the
    # block-scaled products they feed; records/2026-12-01_MLPEpilogue). Persistent programs (one per multiprocessor)
    # walk the output tiles, TMA loads and stores. Each 1 x 128 block's scale is found inside one tile, where a
    # row's scale (fp8_rowwise) would need the whole 1,536-wide row.

    @triton.jit
    def _mlp_fp8_half(x, rows, om, c0, y_desc, y8_desc, aux_desc, YS, M, BACKWARD: tl.constexpr):
        """One 128-column block of an output tile, x (BM, 128) float32 the scaled product -> y, y8 and its scales."""
        if BACKWARD:  # x = dL/da with a = relu(h)²: dL/dh = x * 2 relu(h) = x * 2 sqrt(a)
            y = x * (2.0 * tl.sqrt(aux_desc.load([om, c0]).to(tl.float32)))
        else:
            y = tl.maximum(x, 0.0)
            y = y * y
        yb = y.to(tl.bfloat16)
        y_desc.store([om, c0], yb)
        amax = tl.maximum(tl.max(tl.abs(yb.to(tl.float32)), 1), 1e-30)
        y8_desc.store([om, c0], (yb.to(tl.float32) * (448.0 / amax)[:, None]).to(tl.float8e4nv))
        tl.store(YS + (c0 // 128) * M + rows, amax / 448.0)

    @triton.jit
    def _mlp_fp8_kernel(a_desc, b_desc, y_desc, y8_desc, aux_desc, SA, SB, YS, M, N, K, BM: tl.constexpr,
                        BN: tl.constexpr, BK: tl.constexpr, GROUP_M: tl.constexpr, PROGRAMS: tl.constexpr,
                        BACKWARD: tl.constexpr):
        tiles_m, tiles_n = tl.cdiv(M, BM), tl.cdiv(N, BN)
        in_group = GROUP_M * tiles_n  # tiles taken in groups of GROUP_M rows of tiles: operands reused from L2
        for tile in tl.range(tl.program_id(0), tiles_m * tiles_n, PROGRAMS, flatten=True):
            first_m = tile // in_group * GROUP_M
            size_m = min(tiles_m - first_m, GROUP_M)
            om = (first_m + tile % size_m) * BM
            on = (tile % in_group) // size_m * BN
            acc = tl.zeros((BM, BN), dtype=tl.float32)
            for k in range(0, K, BK):
                acc = tl.dot(a_desc.load([om, k]), b_desc.load([on, k]).T, acc)
            rows = om + tl.arange(0, BM)
            acc = acc * tl.load(SA + rows)[:, None] * tl.load(SB + on + tl.arange(0, BN))[None, :]
            if BN == 256:
                x0, x1 = tl.split(tl.permute(tl.reshape(acc, (BM, 2, 128)), (0, 2, 1)))
                _mlp_fp8_half(x0, rows, om, on, y_desc, y8_desc, aux_desc, YS, M, BACKWARD)
                _mlp_fp8_half(x1, rows, om, on + 128, y_desc, y8_desc, aux_desc, YS, M, BACKWARD)
            else:
                _mlp_fp8_half(acc, rows, om, on, y_desc, y8_desc, aux_desc, YS, M, BACKWARD)


def mlp_fp8_triton(a8, sa, b8, sb, aux=None):
    """mlp_fp8_reference's result by _mlp_fp8_kernel (CUDA, or Triton's CPU interpreter in the tests), tiles
    MLP_FP8_TILES. M a multiple of 128, N of the tile's columns, K of 128 (the model's checks: parse_config)."""
    (M, K), N = a8.shape, b8.size(0)
    BM, BN, BK, group, stages, warps = MLP_FP8_TILES["forward" if aux is None else "backward"]
    y = a8.new_empty(M, N, dtype=torch.bfloat16)
    y8 = a8.new_empty(M, N, dtype=torch.float8_e4m3fn)
    ys = a8.new_empty(N // FP8_BLOCK, M, dtype=torch.float32)
    desc = TensorDescriptor.from_tensor
    sms = torch.cuda.get_device_properties(a8.device).multi_processor_count if a8.is_cuda else 4
    programs = min(sms, (M // BM) * (N // BN))
    _mlp_fp8_kernel[(programs,)](
        desc(a8, [BM, BK]), desc(b8, [BN, BK]), desc(y, [BM, 128]), desc(y8, [BM, 128]),
        desc(y if aux is None else aux, [BM, 128]), sa, sb, ys, M, N, K, BM, BN, BK, group, programs, aux is not None,
        num_warps=warps, num_stages=stages)
    return y, y8, ys


if not hasattr(getattr(torch.ops, OPS), "mlp_fp8"):
    # an opaque op to torch.compile: inductor calls it as it calls a cuBLAS product
    @torch.library.custom_op(f"{OPS}::mlp_fp8", mutates_args=())
    def _mlp_fp8_op(a8: torch.Tensor, sa: torch.Tensor, b8: torch.Tensor, sb: torch.Tensor,
                    aux: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if a8.is_cuda:
            return mlp_fp8_triton(a8, sa, b8, sb, aux)
        return mlp_fp8_reference(a8, sa, b8, sb, aux)

    @_mlp_fp8_op.register_fake
    def _mlp_fp8_fake(a8, sa, b8, sb, aux):
        M, N = a8.size(0), b8.size(0)
        return (a8.new_empty(M, N, dtype=torch.bfloat16), a8.new_empty(M, N, dtype=torch.float8_e4m3fn),
                a8.new_empty(N // FP8_BLOCK, M, dtype=torch.float32))


class MLPFP8(torch.autograd.Function):
    """The MLP relu(x @ w_fc.T)² @ w_proj.T in FP8: x (T, D) bf16, w_fc (F, D), w_proj (D, F) and their copies
    (fp8_weight's "fc", then "proj") -> (T, D) bf16. The op mlp_fp8 makes a = relu(h)² with its e4m3 copy in 1 x
    128 blocks for the block-scaled proj product (fp8_block_mm); backward, the same op makes dL/dh from the proj
    product's input gradient and a, in bf16 for the fc weight gradient and in e4m3 blocks for the fc input
    gradient. Weight gradients: bf16 products in the weights' dtype (mm_out), as in FP8Linear. Needs T a multiple
    of 128, D of 128 and F of 512 (parse_config checks --fp8's shapes)."""

    @staticmethod
    def forward(ctx, x, w_fc, w_proj, fc8, fc_s, fct8, fct_s, pj8, pj_s, pjt8, pjt_s):
        ops = getattr(torch.ops, OPS)
        x8, xs = fp8_rowwise(x)
        a, a8, a_s = ops.mlp_fp8(x8, xs, fc8, fc_s, None)
        ctx.save_for_backward(x, a, fct8, fct_s, pjt8, pjt_s)
        ctx.dtypes = (w_fc.dtype, w_proj.dtype)
        return fp8_block_mm(a8, a_s.t(), pj8, pj_s)

    @staticmethod
    def backward(ctx, g):
        x, a, fct8, fct_s, pjt8, pjt_s = ctx.saved_tensors
        g8, gs = fp8_rowwise(g)
        dh, dh8, dh_s = getattr(torch.ops, OPS).mlp_fp8(g8, gs, pjt8, pjt_s, a)
        dx = fp8_block_mm(dh8, dh_s.t(), fct8, fct_s)
        return dx, mm_out(dh.t(), x, ctx.dtypes[0]), mm_out(g.t(), a, ctx.dtypes[1]), *[None] * 8


def fp8_active(enabled, x):
    """Whether a block's products run in FP8 now: enabled (cfg.fp8), on CUDA, and with gradients on (training;
    evaluation and inference stay bf16)."""
    return bool(enabled) and x.is_cuda and torch.is_grad_enabled()


def fp8_probe(device):
    """A 128-token FP8Linear and MLPFP8 forward and backward on device: None if they run, else the error's text
    (some GPUs of capability >= 8.9 lack row-wise scaled FP8 products in cuBLAS: pytorch/pytorch#192707, sm_120;
    the block-scaled ones need CUDA >= 12.9)."""
    try:
        x = torch.ones(128, 128, device=device, dtype=torch.bfloat16, requires_grad=True)
        shapes = ((128, 128), (512, 128), (128, 512))
        w, wf, wp = (torch.ones(n, k, device=device, dtype=torch.bfloat16) for n, k in shapes)
        y = FP8Linear.apply(x, w, *fp8_weight(w, "qkv"))
        (y + MLPFP8.apply(x, wf, wp, *fp8_weight(wf, "fc"), *fp8_weight(wp, "proj"))).float().sum().backward()
        return None
    except (RuntimeError, NotImplementedError) as e:
        return str(e).splitlines()[0]


def fp8_refusal(device):
    """None if this device can run --fp8 true, else the message that stops the run: no CUDA, a GPU without FP8
    matrix units (compute capability below 8.9), or one whose FP8 products fail (fp8_probe). Measured on an
    H200 (9.0) only."""
    if device.type != "cuda":
        where = "this machine has none"
    elif torch.cuda.get_device_capability(device) < (8, 9):
        cc = ".".join(map(str, torch.cuda.get_device_capability(device)))
        where = f"{torch.cuda.get_device_name(device)} is {cc}"
    elif error := fp8_probe(device):
        where = f"on {torch.cuda.get_device_name(device)} an FP8 product failed: {error}"
    else:
        return None
    return (f"train_plm.py: error: --fp8 true needs a CUDA GPU with FP8 matrix units (compute capability 8.9 or "
            f"newer: Ada, Hopper, Blackwell); {where}. --fp8 false runs them in bf16")


def linear(x, w, cast=None):
    """x (T, K) @ w (N, K).T -> (T, N). cast None: F.linear; else w's FP8 copy (w8, scale) (fp8_weight's "qkv"; in
    training, ProteinLM.fp8_casts) runs the forward in FP8 (FP8Linear, bf16 out as under autocast, which gives
    RMSNorm fp32 outputs: their cast to bf16 fuses into the norm's kernel; both gradients from bf16 products)."""
    if cast is None:
        return F.linear(x, w)
    return FP8Linear.apply(x.to(torch.bfloat16), w, *cast)


def init_linear(w):
    fan_in = w.size(-1)
    bound = 0.5 * math.sqrt(3 / fan_in)  # std 0.5 / sqrt(fan_in), as in modded-nanogpt
    with torch.no_grad():
        return w.uniform_(-bound, bound)


class Attention(nn.Module):
    def __init__(self, dim, heads, has_ve, window):
        super().__init__()
        self.heads, self.window = heads, window
        # q, k, v stacked as 3 (D, D) matrices in one parameter: one matmul, Muon orthogonalises each
        self.qkv_w = nn.Parameter(init_linear(torch.empty(3, dim, dim)))
        self.out = nn.Linear(dim, dim, bias=False)
        nn.init.zeros_(self.out.weight)  # zero-init output projection: each block starts as the identity
        self.ve_lambdas = nn.Parameter(torch.tensor([0.5, 0.5])) if has_ve else None

    def forward(self, qkv, tokens, ve_table, cos, sin, mask, rows=None):
        """qkv (T, 3D): the qkv product of the normed input (Block.attend makes it) -> (T, D), or (C, D) at rows."""
        T = qkv.size(0)
        q, k, v = qkv_prep(qkv, tokens, ve_table, self.ve_lambdas, cos, sin, self.heads)  # (T, H, d) each
        if isinstance(mask, list):  # sequence lengths: no GPU kernels here
            y = segment_attention(*(t.transpose(0, 1)[None] for t in (q, k, v)), mask, self.window)[0].transpose(0, 1)
        else:
            y = doc_attention(q, k, v, *mask, self.window)
        y = y.reshape(T, -1)
        return self.out(y if rows is None else y[rows])  # rows: attention ran on all T, the product on rows only


class MLP(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc = nn.Linear(dim, hidden, bias=False)
        self.proj = nn.Linear(hidden, dim, bias=False)
        init_linear(self.fc.weight)
        nn.init.zeros_(self.proj.weight)

    def forward(self, x, fp8=None):  # fp8: None (bf16), or fc's and proj's FP8 copies for MLPFP8 (training)
        if fp8 is not None:
            return MLPFP8.apply(x.to(torch.bfloat16), self.fc.weight, self.proj.weight, *fp8[0], *fp8[1])
        return F.linear(F.relu(F.linear(x, self.fc.weight)).square(), self.proj.weight)  # ReLU² (So et al. 2021)


class Block(nn.Module):
    """A pre-norm transformer block, in its two halves: attend (U-net skip, x0 mix, attention, residual) and feed
    (MLP, residual). ProteinLM.seam runs one block's feed and the next block's attend as one region."""

    def __init__(self, cfg, has_ve):
        super().__init__()
        self.attn = Attention(cfg.model_dim, cfg.num_heads, has_ve, cfg.attention_window)
        self.mlp = MLP(cfg.model_dim, cfg.mlp_dim)
        self.lambdas = nn.Parameter(torch.tensor([1.0, 0.0]))  # mix of the residual stream and the embedding x0

    def attend(self, x, tokens, x0_table, ve_table, cos, sin, mask, skip=None, skip_weight=None, fp8=None, rows=None):
        """The attention half: x (T, D), the block's input -> x + attention (T, D), or (C, D) given rows (C,) int64:
        the output at those positions only (attention still reads all T). x None: the input is x0 itself (block 0).
        tokens (T,) int64; x0_table (V, D): the normed embedding of each token id, looked up here (x0 =
        x0_table[tokens]); ve_table (V, D) or None: this block's value-embedding table; skip (T, D): the U-net skip,
        added with skip_weight; fp8: None (bf16 products) or this block's weight copies from ProteinLM.fp8_casts
        (qkv, fc, proj)."""
        w = self.attn.qkv_w.flatten(0, 1)
        if x is None:  # x = x0: up to qkv_prep every row is a function of its token id alone, so the mix, the norm
            # and the qkv product run once per id, on the V-row table (bf16), and their rows are looked up
            x = self.lambdas[0] * x0_table + self.lambdas[1] * x0_table
            qkv, x = GatherRows.apply(F.linear(norm(x), w), tokens), GatherRows.apply(x, tokens)
        else:
            if skip is not None:  # U-net: the output of this block's mirror in the first half
                x = x + skip_weight * skip
            x = self.lambdas[0] * x + self.lambdas[1] * GatherRows.apply(x0_table, tokens)
            # FP8 (fp8: the qkv weight's copy (w8, scale) in training; None: bf16): the forward only. The input
            # gradient stays bf16: its row-wise cast cannot fuse into qkv_prep's backward, whose programs each see
            # one head of a row, and a pass of its own costs more than FP8 saves (records/2026-11-30_FP8RowWise)
            qkv = linear(norm(x), w, None if fp8 is None else fp8[0])
        y = self.attn(qkv, tokens, ve_table, cos, sin, mask, rows)
        return (x if rows is None else x[rows]) + y

    def feed(self, x, fp8=None):
        """The MLP half: x (N, D), the attention half's output -> the block's output x + MLP(norm(x)) (N, D)."""
        return x + self.mlp(norm(x), None if fp8 is None else fp8[1:])


class ProteinLM(nn.Module):
    """The encoder. forward(tokens (T,) int64, starts (T,) bool[, labels (T,) int64[, weights (T,) float32]])
    returns logits (T, V) float32, soft-capped at cfg.logit_softcap, or, given labels, the mean cross-entropy
    (nats) over the positions whose label is not -100, or, given weights too, sum(weights x cross-entropy).
    With labels, rows (C,) int64 (prediction_rows: every scored position among them) runs the last block after its
    attention, and the head, at those rows only: the same loss for ~C/T of their cost (sparse prediction).
    Attention never crosses sequence boundaries: doc_attention on CUDA with Triton for head sizes in
    ATTN_HEAD_DIMS, segment_attention otherwise.
    """

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        L, D = cfg.num_layers, cfg.model_dim
        self.embed = nn.Embedding(V, D)
        self.value_embeds = nn.ModuleList(nn.Embedding(V, D) for _ in range(cfg.num_value_embeds))
        self.ve_of_block = [None] * L  # table i feeds block i and its mirror L-1-i
        for i in range(cfg.num_value_embeds):
            self.ve_of_block[i] = self.ve_of_block[L - 1 - i] = i
        self.blocks = nn.ModuleList(Block(cfg, self.ve_of_block[i] is not None) for i in range(L))
        self._fp8_key, self._fp8_casts, self._fp8_flat = None, None, None  # fp8_casts' cache
        self.skip_weights = nn.Parameter(torch.ones(L // 2))  # U-net: block i's output feeds block L-1-i
        self.head_dense = nn.Linear(D, D, bias=False)  # LM head: RMSNorm, dense, GELU, decoder (+ bias)
        self.decoder = nn.Linear(D, V)
        nn.init.zeros_(self.decoder.bias)
        if cfg.tie_embeddings:  # the decoder shares the input embedding (V, D)
            self.decoder.weight = self.embed.weight
        else:
            nn.init.zeros_(self.decoder.weight)
        head_dim = D // cfg.num_heads
        self.register_buffer("inv_freq", 1.0 / 10000 ** (torch.arange(0, head_dim, 2).float() / head_dim),
                             persistent=False)

    @torch.compiler.disable  # eager, also under a whole-model compile: inductor would recompute sin and cos
    # inside every kernel that reads them (~100 ms of a 1.3 s reference step on an H200:
    # records/2026-11-30_RopeTablesBlockOrder)
    def attention_inputs(self, starts):
        """starts (T,) bool -> (mask, cos, sin): the attention mask (on CUDA with Triton, document_ranges'
        (doc, lo, hi) for doc_attention; elsewhere the list of sequence lengths, padding pieces included, for
        segment_attention) and the RoPE tables cos, sin (T, 1, head_dim / 2) float32 of each token's position
        in its own sequence."""
        doc, pos = document_ids(starts)
        if starts.is_cuda and triton is not None and self.cfg.model_dim // self.cfg.num_heads in ATTN_HEAD_DIMS:
            mask = document_ranges(doc, pos, self.cfg.attention_window)
        else:  # sequence boundaries on the host (on a GPU, a sync: only for head sizes the kernels lack)
            edges = torch.cat([starts.nonzero()[:, 0].cpu(), torch.tensor([starts.numel()])])
            mask = edges.diff().tolist()
        angles = (pos[:, None].float() * self.inv_freq[None])[:, None]  # positions restart per sequence
        return mask, angles.cos(), angles.sin()

    def hidden_states(self, tokens, starts, every_layer=True, rows=None):
        """Representations per layer: list of num_layers + 1 tensors (T, D): the normed token embedding, then
        every block's output (the last is before the head's norm). every_layer=False: only the last, as a
        one-element list (training keeps no other). rows (C,) int64: the last block's output at those positions
        only, (C, D)."""
        mask, cos, sin = self.attention_inputs(starts)
        x0_table, ve_tables = self.embed_inputs(tokens)
        L, out, x = len(self.blocks), [GatherRows.apply(x0_table, tokens) if every_layer else None], None
        casts = self.fp8_casts() if fp8_active(self.cfg.fp8, tokens) else [None] * L
        for i in range(L + 1):  # region i: block i - 1's MLP half, then block i's attention half
            prev, block = self.blocks[i - 1] if i else None, self.blocks[i] if i < L else None
            skip = skip_weight = ve_table = None
            if L - L // 2 <= i < L:  # U-net: block i adds block L - 1 - i's output (None: prev's, made in region i)
                skip, skip_weight = out[L - i] if L - i < i else None, self.skip_weights[L - 1 - i]
            if i < L and self.ve_of_block[i] is not None:
                ve_table = ve_tables[self.ve_of_block[i]]
            keep = i > 0 and (every_layer or i == L or 2 * i < L)  # i < L / 2: block i - 1's output is a later skip
            done, x = self.seam(prev, block, x, tokens, x0_table, ve_table, cos, sin, mask, casts[i - 1] if i else None,
                                casts[i] if i < L else None, skip, skip_weight, rows if i == L - 1 else None, keep)
            if i:
                out.append(done)
        return out if every_layer else out[-1:]

    def seam(self, prev, block, x, tokens, x0_table, ve_table, cos, sin, mask, prev_fp8, fp8, skip, skip_weight, rows,
             keep):
        """One region between two blocks: prev's MLP half (Block.feed) on x, prev's attention half's output, then
        block's attention half (Block.attend) on prev's output. Returns (prev's output if keep, else None: an output
        nobody reads would get a zero gradient; block's attention half's output, or None without block). Without
        prev, x is None: block is block 0, whose input is x0. skip_weight without skip: block's U-net skip is prev's
        output (the middle region). compile_regions compiles this, one graph per kind of region. A region ends
        after an attention's residual add, so the MLP's residual add runs in the next block's first norm kernel,
        and in the backward the MLP gradient's FP8 cast and a U-net skip's gradient run in that norm's backward
        kernel (records/2026-12-01_BlockSeams)."""
        if prev is not None:
            x = prev.feed(x, prev_fp8)
        if block is None:
            return x, None
        if skip_weight is not None and skip is None:
            skip = x
        return x if keep else None, block.attend(x, tokens, x0_table, ve_table, cos, sin, mask, skip, skip_weight, fp8,
                                                 rows)

    @torch.compiler.disable  # a host-side cache: eager, also under a whole-model compile
    @torch.no_grad()
    def fp8_casts(self):
        """Every block's FP8 weight copies, per block (qkv for FP8Linear, fc and proj for MLPFP8): fp8_weight of
        each weight kind stacked over the blocks, a few batched kernels. Cached
        until a weight changes (its storage or its version counter, which every in-place write bumps: the
        optimizer's step, load_state_dict): once per optimizer step instead of once per block and micro-batch,
        where the casts were ~1,000 small kernels per reference step. A refresh writes the new casts into the
        cached tensors (same device): a CUDA graph that read them (MicroBatchGraph) reads the new ones."""
        weights = [(b.attn.qkv_w, b.mlp.fc.weight, b.mlp.proj.weight) for b in self.blocks]
        key = [(w.data_ptr(), w._version) for ws in weights for w in ws]
        if key != self._fp8_key:
            kinds = [fp8_weight(torch.stack([w.flatten(0, -2) for w in ws]), kind)
                     for ws, kind in zip(zip(*weights), ("qkv", "fc", "proj"))]
            new = [t for kind in kinds for t in kind]
            if self._fp8_casts is not None and self._fp8_flat[0].device == new[0].device:
                torch._foreach_copy_(self._fp8_flat, new)
            else:
                self._fp8_flat = new
                self._fp8_casts = [tuple(tuple(t[i] for t in kind) for kind in kinds) for i in range(len(self.blocks))]
            self._fp8_key = key
        return self._fp8_casts

    def embed_inputs(self, tokens):
        """tokens (T,) int64 -> (x0_table (V, D): the normed token embedding of each token id, x0 = x0_table[tokens];
        ve_tables: the value-embedding tables (V, D)), bf16 on GPU (the residual stream's dtype), float32
        elsewhere. Every block looks its rows up itself (GatherRows, and qkv_prep's kernel for the value
        embeddings): no (T, D) tensor per table, and no (T, D) gradient summed across blocks."""
        dt = torch.bfloat16 if tokens.is_cuda else torch.float32
        x0_table = norm(self.embed.weight.to(dt))  # RMSNorm is per row: norming the table = norming the lookups
        return x0_table, tuple(ve.weight.to(dt) for ve in self.value_embeds)

    def forward(self, tokens, starts, labels=None, weights=None, rows=None):
        x = self.hidden_states(tokens, starts, every_layer=False, rows=rows)[-1]
        if rows is not None:
            labels, weights = labels[rows], None if weights is None else weights[rows]
        return self.head(x, labels, weights)

    def head(self, x, labels=None, weights=None):
        """The LM head on the last block's output x (T, D): forward's result for these labels and weights."""
        h = F.gelu(self.head_dense(norm(x)))
        if self.cfg.tie_embeddings:  # the shared matrix has unit-scale rows: logits scaled by D^-0.5, as T5 does
            h = h * self.cfg.model_dim ** -0.5  # (Raffel et al. 2020); unscaled, they start at ~sqrt(D)
        logits = self.decoder(h).float()
        c = self.cfg.logit_softcap
        logits = c * torch.tanh(logits / c)
        if labels is None:
            return logits
        if weights is not None:  # masked diffusion: sum of weights (T,) x per-position cross-entropy
            return (F.cross_entropy(logits, labels, ignore_index=-100, reduction="none") * weights).sum()
        loss = F.cross_entropy(logits, labels, ignore_index=-100, reduction="sum")
        return loss / (labels != -100).sum().clamp_min(1)

    def matmul_params(self, prefixes=("",)):
        """Parameters that enter matrix products (everything but embeddings, norms-free scalars, biases), of the
        modules whose names start with one of prefixes."""
        return sum(p.numel() for n, p in self.named_parameters()
                   if p.dim() >= 2 and "embed" not in n and n.startswith(prefixes))


def compile_regions(model):
    """Regional compilation (PyTorch's recipe for models of repeated layers, "Reducing torch.compile cold start
    compilation time with regional compilation"): the regions between blocks (ProteinLM.seam), the embedding and
    the head compiled on their own, in place (evaluation and the end-of-run probes use them too). Dynamo takes
    parameters as graph inputs, so all regions of one kind share one compiled graph instead of tracing and
    lowering 24 blocks: in training 6 kinds (the first; without a U-net skip; the middle one, whose skip is made
    inside; with a skip; the last block's attention, with sparse prediction's rows; the last block's MLP), in
    evaluation 5 (no rows), and 2 more for the probes, which keep every block's output. Nothing fuses across a
    region's edge. On an H200, reference preset, cold cache, with one region per block then: compile + first
    step 25.8 s against 68.3 s for torch.compile(model), median step 1,041.7 against 1,021.4 ms (+2.0%, the same
    host's other GPU; records/2026-11-30_RegionalCompile). The warm-up is outside the training clock, the steps
    are not: torch.compile(model, dynamic=False, options=INDUCTOR_OPTIONS) in its place trades the compile time
    back for those ~2%."""
    # dynamo's default of 8 graphs per function would send a 9th kind of region (of up to 13) back to eager
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 16)
    model.seam = torch.compile(model.seam, dynamic=False, options=INDUCTOR_OPTIONS)
    model.embed_inputs = torch.compile(model.embed_inputs, dynamic=False, options=INDUCTOR_OPTIONS)
    model.head = torch.compile(model.head, dynamic=False, options=INDUCTOR_OPTIONS)


def flops_per_token(model, mean_sq_len, rows_frac=1.0):
    """Model FLOPs per real token, forward + backward (x3 of forward), as in Kaplan et al. / PaLM appendix B:
    6 * N_matmul (each weight: 2 FLOPs per token forward) + attention 12 * L * D * E[n²]/E[n] (QK^T and AV,
    2 * n * D each per token per layer forward, n = length of the token's own sequence).
    mean_sq_len = sum(n²) / sum(n) over the sequences seen. rows_frac: the fraction of rows that the last block's
    output product and MLP, and the head, run on (sparse prediction: capacity / tokens_per_micro_batch); their
    weights count at that fraction. Block 0's qkv product runs on the V-row table (Block.attend), not per
    token: not counted. --attention_window is not counted: with a window shorter than the sequences, the
    attention term (and MFU) is an upper bound."""
    c = model.cfg
    after = (f"blocks.{c.num_layers - 1}.attn.out.", f"blocks.{c.num_layers - 1}.mlp.", "head_dense.", "decoder.")
    sparse, table = model.matmul_params(after), model.matmul_params(("blocks.0.attn.qkv_w",))
    return (6 * (model.matmul_params() - table - (1 - rows_frac) * sparse)
            + 12 * c.num_layers * c.model_dim * mean_sq_len)


# ----------------------------------------------------------------------------------------------------------
# Optimizers: Muon for hidden matrices, Adam for everything else.


@torch.no_grad()
def newton_schulz(G, steps=5):
    """Approximately orthogonalise each matrix of G (..., m, n) -> same shape, bfloat16 on GPU (float32 on
    CPU, where bf16 matmuls are slow): the quintic
    Newton-Schulz iteration of Muon (Jordan et al. 2024, kellerjordan.github.io/posts/muon). Singular
    values land in about [0.7, 1.2] rather than exactly 1, which trains as well and is cheap. Each iteration
    is three batched products, the sums in their epilogues (baddbmm, as in modded-nanogpt): the optimizer
    step runs eagerly, and five element-wise kernels fewer per iteration (with Muon's foreach momentum) took
    the reference preset's Muon step from 15.0 to 12.6 ms on an H200 (records/2026-11-30_MuonBaddbmm)."""
    a, b, c = 3.4445, -4.7750, 2.0315
    X = G.bfloat16() if G.is_cuda else G.float()
    tall = G.size(-2) > G.size(-1)
    if tall:
        X = X.mT
    shape = X.shape
    X = X.reshape(-1, *shape[-2:])  # baddbmm takes (batch, m, n)
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for _ in range(steps):
        A = X @ X.mT
        B = torch.baddbmm(A, A, A, beta=b, alpha=c)  # b A + c A A
        X = torch.baddbmm(X, B, X, beta=a, alpha=1)  # a X + B X
    X = X.view(shape)
    return X.mT if tall else X


# torch 2.13 renamed all_gather_into_tensor to all_gather_single (the old name warns); older torch: the old name
all_gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor


def tree_sum(parts):
    """Sum n equal-shape lists of tensors in a fixed pairwise order, in place: returns parts[0] = the sum.

    Part k += part k + h with h = ceil(n / 2), for every k that has a partner, then the same over the first h
    parts, until one is left. Float addition is commutative but not associative, so the order decides the
    bits. W ranks with A parts each, rank r holding parts i = r, r + W, ..., that sum their own this way and
    then the W results this way (ordered by r), add exactly the pairs one rank adds over all W x A parts when
    A is a power of two (then every halving of a rank's parts is a halving of all of them): the same bits for
    any W, e.g. 1, 2, 4 or 8 GPUs on 8 micro-batches a step."""
    n = len(parts)
    while n > 1:
        h = (n + 1) // 2
        for k in range(n - h):
            torch._foreach_add_(parts[k], parts[k + h])
        n = h
    return parts[0]


MUON_SETS = 8  # each shape's matrices are orthogonalised in (up to) 8 batches: 1, 2, 4 or 8 GPUs share them


class Muon(torch.optim.Optimizer):
    """MomentUm Orthogonalized by Newton-Schulz (Jordan et al. 2024): Nesterov momentum, then the update of
    each (m, n) matrix is orthogonalised and scaled by sqrt(max(1, m/n)). A parameter of shape (k, m, n) is
    k separate matrices. Only for hidden 2-D weights.

    The parameters of one shape are split into min(MUON_SETS, count) sets of consecutive ones whose sizes
    differ by at most 1, the larger first (24 -> 8 sets of 3; 12 -> 4 of 2, then 4 of 1); a set is one
    batched Newton-Schulz call. The sets do not depend on the number of GPUs: a batch that did could change
    the bits of a reduction inside it.

    Data parallel (world_size > 1; the layout of modded-nanogpt's distributed Muon): each rank's p.grad is
    its share of the gradient (the training step divides the loss by micro-batches x ranks), and the ranks'
    shares are summed. The sets of a shape are taken in chunks of world_size; rank r receives every rank's
    gradients of the chunk's r-th set (one all-to-all, the bytes of a reduce-scatter) and sums them in
    tree_sum's order (the training step's sums then have the same bits for any number of ranks that leaves
    each a power-of-two number of micro-batches); it keeps that set's momentum (optimizer state sharded across
    ranks), orthogonalises it, and the updates are all-gathered. Each rank so does 1/world_size of the
    Newton-Schulz work and communication is 2x the parameters, as for an all-reduce.
    """

    def __init__(self, params, lr, momentum=0.95, rank=0, world_size=1):
        super().__init__(list(params), dict(lr=lr, momentum=momentum))
        self.rank, self.world = rank, world_size

    def chunks(self):
        """[(group, shape, size, [sets of at most `size` params of one shape, at most world_size sets])], the
        same order on every rank; a chunk's r-th set belongs to rank r."""
        out = []
        for group in self.param_groups:
            by_shape = defaultdict(list)
            for p in group["params"]:
                by_shape[tuple(p.shape)].append(p)
            for shape, ps in by_shape.items():
                k = min(MUON_SETS, len(ps))
                q, extra = divmod(len(ps), k)
                sizes = [q + 1] * extra + [q] * (k - extra)  # the larger first: W dividing 8 gets even shares
                ends = np.cumsum([0] + sizes).tolist()
                sets = [ps[a:b] for a, b in zip(ends, ends[1:])]
                size = sizes[0]
                out += [(group, shape, size, sets[i:i + self.world]) for i in range(0, len(sets), self.world)]
        return out

    @torch.no_grad()
    def step(self):
        W, r = self.world, self.rank
        chunks, work = self.chunks(), []
        for group, shape, size, sets in chunks:  # launch every all-to-all first, then compute while they fly
            if W == 1:
                work.append((None, torch.stack([p.grad for p in sets[0]])))
                continue
            zero = sets[0][0].grad.new_zeros(math.prod(shape))
            flat = torch.cat([g for ps in sets for g in [p.grad.flatten() for p in ps] + [zero] * (size - len(ps))]
                             + [zero] * (size * (W - len(sets))))  # (W sets x size params), zero-padded
            got = torch.empty_like(flat)  # row q: rank q's gradients of this rank's set of the chunk
            work.append((dist.all_to_all_single(got, flat, async_op=True), got))
        gathers = []
        for (group, shape, size, sets), (handle, grads) in zip(chunks, work):
            mine = sets[r] if r < len(sets) else []
            if handle is not None:
                handle.wait()
                grads = tree_sum([[row] for row in grads.view(W, -1).unbind(0)])[0].view(size, *shape)
            (m, n), numel = shape[-2:], math.prod(shape)
            x = grads.new_zeros(0, numel)  # a rank past the chunk's last set has nothing to orthogonalise
            if mine:
                grads = list(grads[:len(mine)])
                for p, g in zip(mine, grads):
                    if "momentum_buffer" not in self.state[p]:
                        self.state[p]["momentum_buffer"] = torch.zeros_like(g)
                bufs = [self.state[p]["momentum_buffer"] for p in mine]
                torch._foreach_lerp_(bufs, grads, 1 - group["momentum"])
                updates = torch._foreach_lerp(grads, bufs, group["momentum"])  # Nesterov
                x = newton_schulz(torch.stack(updates).view(-1, m, n)).to(bufs[0].dtype).reshape(len(mine), numel)
            if W > 1:
                x = torch.cat([x, x.new_zeros(size - len(mine), numel)])  # every rank sends `size` updates
                full = x.new_empty(W * x.numel())
                gathers.append((all_gather(full, x.flatten(), async_op=True), group, shape, size, sets, full))
            else:
                gathers.append((None, group, shape, size, sets, x))
        for handle, group, shape, size, sets, full in gathers:
            if handle is not None:
                handle.wait()
            m, n = shape[-2:]
            new = full.view(-1, *shape)  # row q x size + i: the update of parameter i of set q
            params = [p for ps in sets for p in ps]
            upd = [new[q * size + i] for q, ps in enumerate(sets) for i in range(len(ps))]
            torch._foreach_add_(params, upd, alpha=-group["lr"] * max(1, m / n) ** 0.5)

    @torch.no_grad()
    def gathered_state_dict(self):
        """state_dict() holding every matrix's momentum buffer, also those other ranks own (a collective:
        every rank must call it), so a checkpoint written by rank 0 is complete."""
        if self.world == 1:
            return self.state_dict()
        filled = []
        for group, shape, size, sets in self.chunks():
            mine = sets[self.rank] if self.rank < len(sets) else []
            dev = sets[0][0].device
            own = [self.state[p].get("momentum_buffer") for p in mine]
            own = torch.stack([torch.zeros(shape, device=dev) if b is None else b for b in own]
                              + [torch.zeros(shape, device=dev)] * (size - len(mine)))
            full = own.new_empty(self.world * own.numel())
            all_gather(full, own.flatten())
            for q, ps in enumerate(sets):
                for i, p in enumerate(ps):
                    if q != self.rank:
                        self.state[p]["momentum_buffer"] = full.view(self.world, size, *shape)[q, i].clone()
                        filled.append(p)
        sd = self.state_dict()
        for p in filled:  # other ranks' buffers stay out of this rank's working state
            del self.state[p]
        return sd


def make_optimizers(model, cfg, fused, rank=0, world_size=1):
    """Muon for the blocks' matrices; Adam (betas 0.8/0.95, eps 1e-10) for embeddings, value embeddings,
    LM head and scalars. Asserts every parameter sits in exactly one group; returns (optimizers, counts)."""
    groups = {"muon": [], "embed": [], "head": [], "scalar": []}
    for name, p in model.named_parameters():
        if name.startswith("blocks.") and p.dim() >= 2:
            groups["muon"].append(p)
        elif "embed" in name:
            groups["embed"].append(p)
        elif name.startswith(("head_dense", "decoder")):
            groups["head"].append(p)
        else:
            groups["scalar"].append(p)
    ids = [id(p) for g in groups.values() for p in g]
    assert sorted(ids) == sorted(id(p) for p in model.parameters()) and len(ids) == len(set(ids)), \
        "every parameter must be in exactly one optimizer group"
    adam = torch.optim.Adam([dict(params=groups["embed"], lr=cfg.lr_embed),
                             dict(params=groups["head"], lr=cfg.lr_head),
                             dict(params=groups["scalar"], lr=cfg.lr_scalar)],
                            betas=(0.8, 0.95), eps=1e-10, fused=fused)
    muon = Muon(groups["muon"], lr=cfg.lr_hidden, momentum=cfg.muon_momentum, rank=rank, world_size=world_size)
    opts = [adam, muon]
    for opt in opts:
        for g in opt.param_groups:
            g["initial_lr"] = g["lr"]
    counts = {k: (len(v), sum(p.numel() for p in v)) for k, v in groups.items()}
    return opts, counts


def lr_multiplier(step, cfg):
    """Linear warm-up over warmup_steps, constant, then linear cooldown to 0 over the last cooldown_frac; where
    the two overlap (a run shorter than its warm-up plus cooldown), the smaller of the two."""
    warm = (step + 1) / cfg.warmup_steps if step < cfg.warmup_steps else 1.0
    cool = min(1.0, (1 - step / cfg.steps) / cfg.cooldown_frac) if cfg.cooldown_frac > 0 else 1.0
    return min(warm, cool)


# ----------------------------------------------------------------------------------------------------------
# Evaluation: fixed-seed 15% <mask> protocol, sums reduced across ranks.

VAL_MASK_RATE, VAL_SEED = 0.15, 0
TARGET_SLACK = 0.02  # nats: a quarter-shard check this close to the target triggers the whole-shard evaluation


def eval_batches(paths, cfg, rate=VAL_MASK_RATE, stream=(), every=1, offset=0):
    """Pack a split for evaluation, deterministically: sequence i (in file order) gets its own mask, drawn
    from np.random.default_rng([VAL_SEED, *stream, i]): each residue independently -> <mask> with prob. rate
    (the protocol: 0.15, stream ()). So the mask never depends on batch size or GPU count. Only the
    sequences with i % every == offset are taken (the NELBO's strata). Sequences longer than max_length keep
    their first max_length tokens. Returns a list of (inputs uint8 (T,), starts bool (T,), labels int16 (T,), -100 =
    unscored) and the residue counts (V,) int64 of the whole split (for its unigram entropy)."""
    shards, seqs = index_sequences(paths)
    out, T = [], cfg.tokens_per_micro_batch
    counts = np.zeros(V, np.int64)
    new = lambda: (np.full(T, PAD, np.uint8), np.zeros(T, bool), np.full(T, -100, np.int16))
    inputs, starts, labels = new()
    pos = 0
    for i, (k, a, b) in enumerate(seqs):
        if i % every != offset:
            continue
        seq = np.asarray(shards[k][a:b][:cfg.max_length])
        counts += np.bincount(seq, minlength=V)
        picked = (seq >= RESIDUES.start) & (seq < RESIDUES.stop)
        picked &= np.random.default_rng([VAL_SEED, *stream, i]).random(len(seq)) < rate
        if pos + len(seq) > T:
            starts[pos::cfg.max_length] = True
            out.append((inputs, starts, labels))
            (inputs, starts, labels), pos = new(), 0
        inputs[pos:pos + len(seq)] = np.where(picked, MASK, seq)
        labels[pos:pos + len(seq)] = np.where(picked, seq.astype(np.int16), -100)
        starts[pos] = True
        pos += len(seq)
    if pos:
        starts[pos::cfg.max_length] = True
        out.append((inputs, starts, labels))
    return out, counts


def nelbo_batches(paths, cfg):
    """The fixed masks of the validation NELBO: [(t_k, eval_batches of the sequences i with i % K == k, masked
    at rate t_k)] for the K = nelbo_grid bin midpoints t_k = (k + 1/2) / K of (0, 1), seed stream (1,). Each
    sequence is scored once, at one t: the whole grid costs one pass over the split."""
    K = cfg.nelbo_grid
    grid = [((k + 0.5) / K, eval_batches(paths, cfg, (k + 0.5) / K, (1,), K, k)[0]) for k in range(K)]
    return [(t, b) for t, b in grid if b]  # a split of fewer than K sequences leaves strata empty


def validation_nelbo(model, grid, residues, device, rank, world_size, autocast):
    """Masked-diffusion negative ELBO per residue (nats; MDLM, Sahoo et al. 2024, eq. 10): the integral over
    t in (0, 1) of E[sum of masked cross-entropy] / t, estimated with the rates t_k of `grid` (nelbo_batches)
    stratified over the sequences (midpoint rule), divided by the split's residue count `residues`. An upper
    bound on the per-residue negative log-likelihood; comparable across objectives (an MLM model gets one)."""
    total = 0.0
    for t, batches in grid:
        r = evaluate(model, batches, device, rank, world_size, autocast)
        total += r["loss"] * r["masked_tokens"] / t
    return total / residues


def unigram_entropy(counts):
    """Entropy (nats) of the residue distribution (ids 4-28) given token counts (V,)."""
    p = counts[RESIDUES.start:RESIDUES.stop].astype(np.float64)
    p = p[p > 0] / p.sum()
    return float(-(p * np.log(p)).sum())


def classification_metrics(confusion):
    """Metrics from a (V, V) confusion matrix of masked positions (rows: true token, cols: predicted).

    Returns accuracy, macro precision / recall / F1 over the 20 canonical amino acids (a class never
    predicted counts precision 0, as scikit-learn's zero_division=0), and multi-class MCC (Gorodkin 2004;
    scikit-learn's matthews_corrcoef) over all classes."""
    C = confusion.astype(np.float64)
    n, tp = C.sum(), np.diag(C)
    pred, true = C.sum(0), C.sum(1)
    aa = list(CANONICAL)
    prec = np.divide(tp[aa], pred[aa], out=np.zeros(len(aa)), where=pred[aa] > 0)
    rec = np.divide(tp[aa], true[aa], out=np.zeros(len(aa)), where=true[aa] > 0)
    f1 = np.divide(2 * prec * rec, prec + rec, out=np.zeros(len(aa)), where=prec + rec > 0)
    return dict(accuracy=float(tp.sum() / max(n, 1)), precision=float(prec.mean()), recall=float(rec.mean()),
                f1=float(f1.mean()), mcc=mcc(C))


def mcc(confusion):
    """Multi-class Matthews correlation (Gorodkin 2004; scikit-learn's matthews_corrcoef) of a (C, C)
    confusion matrix (rows: true, columns: predicted); 0 when undefined."""
    C = np.asarray(confusion, np.float64)
    n, tp, pred, true = C.sum(), np.trace(C), C.sum(0), C.sum(1)
    denom = math.sqrt(max(n * n - pred @ pred, 0) * max(n * n - true @ true, 0))
    return float((tp * n - pred @ true) / denom) if denom > 0 else 0.0


@torch.no_grad()
def evaluate(model, batches, device, rank, world_size, autocast):
    """Masked-token cross-entropy (nats, token-weighted over all masked positions) and metrics of a split.

    Batch j goes to rank j % world_size; every rank runs the same number of forward passes (an all-padding
    batch where it has none left), and sums, not means, are reduced, so the result is the same for any
    number of GPUs. Returns dict(loss, perplexity, accuracy, precision, recall, f1, mcc, masked_tokens)."""
    T = batches[0][0].shape[0]
    empty = (np.full(T, PAD, np.uint8), np.arange(T) % ATTN_BLOCK == 0, np.full(T, -100, np.int16))
    per_rank = -(-len(batches) // world_size)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    confusion = torch.zeros(V * V, dtype=torch.int64, device=device)
    for j in range(rank, per_rank * world_size, world_size):
        inputs, starts, labels = batches[j] if j < len(batches) else empty
        inputs = torch.from_numpy(inputs).to(device).long()
        starts = torch.from_numpy(starts).to(device)
        labels = torch.from_numpy(labels).to(device).long()
        with autocast:
            logits = model(inputs, starts)
        scored = labels != -100
        target = labels[scored]
        loss_sum += F.cross_entropy(logits[scored].float(), target, reduction="sum").double()
        confusion += torch.bincount(target * V + logits[scored].argmax(-1), minlength=V * V)
    if world_size > 1:
        dist.all_reduce(loss_sum)
        dist.all_reduce(confusion)
    C = confusion.view(V, V).cpu().numpy()
    n = int(C.sum())
    loss = loss_sum.item() / max(n, 1)
    return dict(loss=loss, perplexity=math.exp(loss), **classification_metrics(C), masked_tokens=n)


# ----------------------------------------------------------------------------------------------------------
# Checkpoints (exact resume) and export (the trained model, for evaluation, probing and generation).

SHAPE_FIELDS = ("num_layers", "model_dim", "num_heads", "mlp_dim", "num_value_embeds", "tie_embeddings")
# what train() writes into a checkpoint and reads back to resume ("target" too, where reached)
CHECKPOINT_KEYS = ("config", "source", "world_size", "step", "model", "optimizers", "train_time", "tokens_seen",
                   "padded_seen", "sumsq_seen", "val", "data_positions")


def save_checkpoint(path, state):
    """Write a training checkpoint atomically (temporary file, then rename): a crash mid-write never
    corrupts an earlier checkpoint. state: dict of tensors, numbers, strings, lists and dicts."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(spec, out_dir, run_id=""):
    """Find and read a checkpoint: spec is a path, or "latest" = the newest readable ckpt_*.pt under
    out_dir/<run_id>/ (under out_dir/*/ without run_id). Returns (state dict, path). An unreadable file
    (e.g. truncated by a crash outside save_checkpoint) is reported and the previous checkpoint is used.
    Raises FileNotFoundError when there is none (or an explicit path cannot be read)."""
    if spec != "latest":
        try:
            return torch.load(spec, map_location="cpu", weights_only=True), spec
        except Exception as e:  # torch's own text can run to many lines: its first names the cause
            reason = (str(e).strip().splitlines() or [""])[0][:200]
            raise FileNotFoundError(f"{spec}: not a readable checkpoint (a ckpt_*.pt of train_plm.py): "
                                    f"{type(e).__name__}: {reason}") from e
    pattern = os.path.join(out_dir, run_id or "*", "ckpt_*.pt")
    for path in sorted(glob.glob(pattern), key=os.path.getmtime, reverse=True):
        try:
            return torch.load(path, map_location="cpu", weights_only=True), path
        except Exception as e:
            print(f"skipping unreadable checkpoint {path}: {e}", file=sys.stderr)
    raise FileNotFoundError(f"no readable checkpoint matches {pattern}")


def export_model(model, cfg, folder):
    """Write folder/model.safetensors (weights of the unwrapped model, float32) and folder/config.json:
    the format the Hugging Face ecosystem expects. Returns the folder. Needs the safetensors package."""
    from safetensors.torch import save_file
    os.makedirs(folder, exist_ok=True)
    config, weights = os.path.join(folder, "config.json"), os.path.join(folder, "model.safetensors")
    with open(config, "w") as f:
        json.dump(dataclasses.asdict(cfg), f, indent=2)
    save_file({k: v.detach().float().cpu().clone() for k, v in model.state_dict().items()}, weights)  # tied: 2 copies
    os.chmod(weights, os.stat(config).st_mode & 0o777)  # safetensors 0.8 writes 0600; share it as config.json is
    return folder


def load_model(path, device="cpu"):
    """Load a trained model: path = an export folder (model.safetensors + config.json, see export_model) or
    a training checkpoint (.pt). Returns (ProteinLM in eval mode on device, Config)."""
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise FileNotFoundError(f"{path}: not an export folder (no config.json; export_model writes "
                                    "model.safetensors + config.json) and not a checkpoint .pt")
        from safetensors.torch import load_file
        with open(os.path.join(path, "config.json")) as f:
            cfg = Config(**json.load(f))
        weights = load_file(os.path.join(path, "model.safetensors"))
    else:
        try:
            state, _ = load_checkpoint(path, "")
        except FileNotFoundError as e:  # name both kinds of model this reads
            raise FileNotFoundError(f"{e}; a model is an export folder (model.safetensors + config.json) or a "
                                    "checkpoint ckpt_*.pt") from None
        if not (isinstance(state, dict) and "config" in state and "model" in state):
            raise FileNotFoundError(f"{path}: not a checkpoint of train_plm.py (no config and model in it)")
        cfg, weights = Config(**state["config"]), state["model"]
    model = ProteinLM(cfg)
    model.load_state_dict(weights)
    return model.to(device).eval(), cfg


# ----------------------------------------------------------------------------------------------------------
# Generation by iterative unmasking, and pseudo-perplexity scoring (modes `generate` and `score`).


def inference_autocast(device):
    """bf16 autocast on a GPU, nothing on CPU (fp32): the precision of training, for a trained model's use."""
    return torch.autocast("cuda", torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()


def parse_template(text):
    """A generation template -> residue ids, np.ndarray (n,) uint8: amino-acid letters are kept, `<mask>`
    or `-` is a position to generate. An integer string "L" means L masked positions. Raises ValueError
    on a character outside the vocabulary or a special token other than <mask>."""
    if text.isdigit():
        return np.full(int(text), MASK, np.uint8)
    ids = encode(text, add_special=False)  # '-' is a vocabulary token (gap): positions stay those of the text
    ids[ids == TOKEN_ID["-"]] = MASK
    bad = [VOCAB[i] for i in ids if not (RESIDUES.start <= i < RESIDUES.stop or i == MASK)]
    if bad:
        raise ValueError(f"template {text!r}: {bad[0]} is not a residue or <mask>")
    return ids


def pack(sequences, multiple=ATTN_BLOCK, length=0):
    """Residue arrays -> one packed batch: tokens (T,) int64 `<cls> residues <eos>` each, starts (T,) bool,
    and the slice of each sequence's residues; T is padded to a multiple of `multiple` (attention's blocks), or
    to `length` when given (a fixed shape: no recompilation). Raises ValueError if they exceed `length`."""
    framed = [np.concatenate([[CLS], np.asarray(s, np.int64), [EOS]]) for s in sequences]
    T = -(-sum(len(f) for f in framed) // multiple) * multiple
    if length:
        if T > length:
            raise ValueError(f"pack: {T} tokens do not fit a batch of {length}")
        T = length
    tokens, starts, spans, pos = np.full(T, PAD, np.int64), np.zeros(T, bool), [], 0
    for f in framed:
        tokens[pos:pos + len(f)], starts[pos] = f, True
        spans.append(slice(pos + 1, pos + len(f) - 1))
        pos += len(f)
    starts[pos::multiple] = True  # padding: its own attention blocks
    return torch.from_numpy(tokens), torch.from_numpy(starts), spans


@torch.no_grad()
def generate(model, templates, steps=50, temperature=1.0, seed=0, order_noise=4.5):
    """Fill the <mask> positions of each template by iterative unmasking with confidence-based order
    (MaskGIT, Chang et al. 2022; LLaDA's low-confidence remasking, Nie et al. 2025).

    templates: list of residue arrays (parse_template). Each of `steps` rounds runs the model on the whole
    packed batch, samples a residue for every masked position from the 20 canonical amino acids only
    (softmax at `temperature`; 0 = argmax) and keeps the samples of highest confidence, so that the number
    still masked in each sequence falls linearly to 0 at the last round; the rest are masked again. The
    confidence is log p(sample) + Gumbel noise scaled by order_noise x (1 - round / steps), MaskGIT's
    annealed "choice temperature" (4.5 there): pure confidence (order_noise 0) lets a weak model fill a
    protein with its most frequent residue first and then repeat it. Given residues never change.
    Deterministic for a seed (one torch.Generator on the model's device). Returns a
    list of protein strings of the templates' lengths."""
    device = next(model.parameters()).device
    tokens, starts, spans = pack(templates)
    tokens, starts = tokens.to(device), starts.to(device)
    gen = torch.Generator(device).manual_seed(seed)
    autocast = inference_autocast(device)
    total = [int((tokens[sp] == MASK).sum()) for sp in spans]
    for r in range(steps):
        masked = tokens == MASK
        if not masked.any():
            break
        with autocast:
            logits = model(tokens, starts)[:, CANONICAL.start:CANONICAL.stop].float()
        if temperature > 0:
            probs = torch.softmax(logits / temperature, -1)
            pick = torch.multinomial(probs, 1, generator=gen)[:, 0]
        else:
            probs = torch.softmax(logits, -1)
            pick = probs.argmax(-1)
        conf = probs.gather(1, pick[:, None])[:, 0].clamp_min(1e-30).log()
        if order_noise > 0:
            u = torch.rand(conf.shape, device=device, generator=gen).clamp(1e-20, 1 - 1e-7)
            conf = conf - order_noise * (1 - r / steps) * torch.log(-torch.log(u))  # + scaled Gumbel noise
        conf = conf.masked_fill(~masked, -math.inf)
        sampled = pick + CANONICAL.start
        for sp, n in zip(spans, total):
            left = int(masked[sp].sum())
            reveal = left - (n * (steps - r - 1)) // steps  # n (steps - r - 1) / steps stay masked after round r
            if reveal > 0:
                idx = conf[sp].topk(reveal).indices + sp.start
                tokens[idx] = sampled[idx]
    return [decode(tokens[sp].cpu()) for sp in spans]


@torch.no_grad()
def pseudo_perplexity(model, sequences, tokens_per_batch=8192):
    """Pseudo-log-likelihood scoring (Salazar et al. 2020; ESM's PPPL): each canonical residue (the 20 amino
    acids; X, B, U, Z, O stay in the context but are not scored: no model can predict an unknown) is
    masked on its own and scored: one masked copy per position, copies packed into batches of one fixed
    size (the larger of tokens_per_batch and the longest sequence + 2, rounded up to ATTN_BLOCK).
    sequences: list of residue arrays. Returns (mean cross-entropy in nats over the scored residues, its
    exp: the pseudo-perplexity, the number of residues not scored). Raises ValueError when no residue is
    canonical (there is nothing to score)."""
    device = next(model.parameters()).device
    autocast = inference_autocast(device)
    total, count, batch, targets = 0.0, 0, [], []
    longest = max((len(s) for s in sequences), default=0) + 2
    T = -(-max(tokens_per_batch, longest) // ATTN_BLOCK) * ATTN_BLOCK  # every batch this size: one shape

    def flush():
        nonlocal total
        tokens, starts, spans = pack(batch, length=T)
        with autocast:
            logits = model(tokens.to(device), starts.to(device)).float()
        where = torch.tensor([sp.start + j for sp, (j, _) in zip(spans, targets)], device=device)
        label = torch.tensor([t for _, t in targets], device=device)
        total += F.cross_entropy(logits[where], label, reduction="sum").item()
        batch.clear(), targets.clear()

    used, skipped = 0, 0  # tokens in the batch being filled; non-canonical residues not scored
    for seq in sequences:
        seq = np.asarray(seq, np.int64)
        for j in range(len(seq)):
            if not CANONICAL.start <= seq[j] < CANONICAL.stop:
                skipped += 1
                continue
            if used + len(seq) + 2 > T:
                flush()
                used = 0
            copy_ = seq.copy()
            copy_[j] = MASK
            batch.append(copy_), targets.append((j, int(seq[j])))
            count += 1
            used += len(seq) + 2
    if not count:
        raise ValueError(f"no canonical residue to score (all {skipped} are X B U Z O)")
    if batch:
        flush()
    mean = total / count
    return mean, math.exp(mean), skipped


def read_fasta(path):
    """(ids, residue arrays np.uint8, normalisations) of a FASTA file (.gz too; a leading UTF-8 byte-order mark
    is skipped). Normalised and counted, as data/prepare.py does: lower case upper-cased, one final '*'
    stripped. Raises ValueError naming the file (and the record) on an unreadable or empty file, a sequence
    line before the first header, an empty record or a character other than the 25 residue letters (the 20
    amino acids and X B U Z O; as data/prepare.py, gaps '-' '.' and tokens such as <mask> are refused)."""
    records = []  # [id, [lines]]
    try:
        with (gzip.open(path, "rt", encoding="utf-8-sig") if path.endswith(".gz")
              else open(path, encoding="utf-8-sig")) as f:
            for line in f:
                line = line.strip()
                if line.startswith(">"):
                    records.append([line[1:].split()[0] if line[1:].strip() else f"record_{len(records) + 1}", []])
                elif line:
                    if not records:
                        raise ValueError(f"{path}: sequence before the first '>' header")
                    records[-1][1].append(line)
    except (EOFError, OSError, UnicodeDecodeError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise ValueError(f"{path}: cannot read ({type(e).__name__}: {e})") from None
    if not records:
        raise ValueError(f"{path}: no FASTA record")
    seqs, notes = [], dict(upper_cased=0, stop_stripped=0)
    for rid, lines in records:
        text = "".join(lines)
        notes["stop_stripped"] += text.endswith("*")
        text = text[:-1] if text.endswith("*") else text
        notes["upper_cased"] += text != text.upper()
        if not text:
            raise ValueError(f"{path}: record {rid!r} is empty")
        bad = next((i for i, ch in enumerate(text.upper()) if ch not in RESIDUE_LETTERS), None)
        if bad is not None:
            raise ValueError(f"{path}: record {rid!r}: character {text[bad]!r} at position {bad + 1} is not a "
                             "residue (the 20 amino acids and X B U Z O)")
        try:
            seqs.append(encode(text, add_special=False))
        except ValueError as e:
            raise ValueError(f"{path}: record {rid!r}: {e}") from None
    return [r for r, _ in records], seqs, notes


def composition(sequences):
    """Amino-acid composition: {letter: fraction} over the 20 canonical residues of all sequences."""
    counts = np.bincount(np.concatenate([np.asarray(s, np.int64) for s in sequences]), minlength=V)
    aa = counts[CANONICAL.start:CANONICAL.stop]
    return {VOCAB[CANONICAL.start + i]: float(c) / max(int(aa.sum()), 1) for i, c in enumerate(aa)}


def check_out_folder(ap, out):
    """Usage error (ap.error: exit status 2) when --out names a file in a folder that does not exist, before
    any work rather than after it."""
    if out and not os.path.isdir(os.path.dirname(os.path.abspath(out))):
        ap.error(f"--out {out}: its folder does not exist")


def sample_main(argv):
    """`python train_plm.py generate MODEL ...` (FASTA to stdout or --out) and
    `python train_plm.py score MODEL FASTA` (pseudo-perplexity and composition; a sequence longer than the
    model's context, max_length - 2 residues, is scored on its first max_length - 2, as validation crops,
    and counted). MODEL: an export folder or a checkpoint (load_model)."""
    mode = argv[0]
    about = {"generate": "Fill masked positions by iterative unmasking; FASTA to stdout or --out.",
             "score": "Print the pseudo-perplexity of a FASTA file's sequences under the model (each canonical "
                      "residue masked alone), the normalisations applied and the amino-acid composition."}
    ap = argparse.ArgumentParser(prog=f"train_plm.py {mode}", description=about[mode], allow_abbrev=False)
    ap.add_argument("model", help="export folder (model.safetensors + config.json) or checkpoint .pt")
    if mode == "generate":
        ap.add_argument("--template", action="append", help="residues with <mask> or - to fill, or a length "
                        "L (all masked); repeatable; default: --num sequences of --length")
        ap.add_argument("--num", type=int, help="sequences to generate (default 10); with --template: from each "
                        "template (default 1)")
        ap.add_argument("--length", type=int, help="residues per sequence without --template (default 100)")
        ap.add_argument("--steps", type=int, default=0,
                        help="unmasking rounds (default 0: the longest template's length)")
        ap.add_argument("--temperature", type=float, default=1.0,
                        help="sampling temperature of each round (0 = greedy; default 1.0)")
        ap.add_argument("--order_noise", type=float, default=4.5, help="Gumbel noise on the unmasking order "
                        "(annealed to 0; 0 = pure confidence; default 4.5)")
        ap.add_argument("--seed", type=int, default=0, help="seeds the samples and the order noise (default 0)")
        ap.add_argument("--out", default="", help="FASTA file (default: stdout)")
    else:
        ap.add_argument("fasta", help="sequences to score")
    args = ap.parse_args(argv[1:])
    if mode == "generate":
        if args.template and args.length is not None:
            ap.error("--length sets the length of sequences without a template; a template has its own")
        args.num = args.num if args.num is not None else 1 if args.template else 10
        args.length = 100 if args.length is None else args.length
        checks = (("--num", args.num < 1), ("--length", args.length < 1), ("--steps", args.steps < 0),
                  ("--temperature", not 0 <= args.temperature < math.inf),  # nan compares False
                  ("--order_noise", not 0 <= args.order_noise < math.inf))
        broken = [flag for flag, bad in checks if bad]
        if broken:
            ap.error(f"{', '.join(broken)}: --num and --length must be >= 1, --steps >= 0, --temperature and "
                     "--order_noise finite and >= 0")
        check_out_folder(ap, args.out)
    model, _ = load_model(args.model, "cuda" if torch.cuda.is_available() else "cpu")
    if mode == "score":
        ids, seqs, notes = read_fasta(args.fasta)
        context = model.cfg.max_length - 2  # residues between <cls> and <eos>: positions the model trained on
        cropped = sum(len(s) > context for s in seqs)
        scored = [s[:context] for s in seqs]
        try:
            mean, ppl, skipped = pseudo_perplexity(model, scored)
        except ValueError as e:
            raise ValueError(f"{args.fasta}: {e}") from None
        comp = composition(seqs)
        print(f"{args.fasta}: {len(seqs)} sequences, {sum(len(s) for s in scored) - skipped} residues scored, "
              f"pseudo-perplexity {ppl:.3f} (mean masked cross-entropy {mean:.4f} nats per residue); normalised: "
              f"{notes['upper_cased']} upper-cased, {notes['stop_stripped']} final '*' stripped, {cropped} "
              f"longer than the model's context cropped to their first {context} residues; {skipped} "
              "non-canonical residues (X B U Z O) kept as context, not scored")
        print("composition (whole sequences) " + " ".join(f"{a}:{c:.4f}" for a, c in comp.items()))
        return dict(sequences=len(seqs), pseudo_perplexity=ppl, pseudo_nll=mean, not_scored=skipped,
                    cropped=cropped, composition=comp)
    try:
        templates = []
        for t in args.template or ():
            try:
                if len(parse_template(t)) == 0:
                    raise ValueError("a template of length 0")
                templates += [parse_template(t) for _ in range(args.num)]
            except ValueError as e:
                raise ValueError(f"--template {t!r}: {e}") from None
        templates = templates or [np.full(args.length, MASK, np.uint8) for _ in range(args.num)]
        longest = max(len(t) for t in templates)
        if longest > model.cfg.max_length - 2:
            raise ValueError(f"a template of {longest} residues is longer than the model's context "
                             f"(max_length {model.cfg.max_length} - 2 = {model.cfg.max_length - 2} residues)")
    except ValueError as e:
        ap.error(str(e))
    steps = args.steps or max(len(t) for t in templates)
    out = generate(model, templates, steps, args.temperature, args.seed, args.order_noise)
    fasta = "".join(f">generated_{i} seed={args.seed} temperature={args.temperature} steps={steps} "
                    f"order_noise={args.order_noise}{f' template={i // args.num}' if args.template else ''}\n{s}\n"
                    for i, s in enumerate(out))
    if args.out:
        with open(args.out, "w") as f:
            f.write(fasta)
    else:
        sys.stdout.write(fasta)
    return out


# ----------------------------------------------------------------------------------------------------------
# Representation probes: every layer's embeddings scored by linear probes (mode `probe`, or --probe).

PROBE_TASKS = {  # data/probes/<task>.tsv.gz, built by data/make_probes.py: (kind, primary metric)
    "scl2205": ("class", "mcc"),  # sub-cellular localisation, 13 classes, per protein
    "esol": ("regression", "spearman"),  # solubility, per protein
    "secondary_structure": ("residue", "accuracy"),  # H / E / C per residue: Q3
}
SS_STATES = "HEC"  # '-' (unresolved) residues are neither trained on nor scored
PROBE_RESIDUES = {"train": 100_000, "valid": 50_000}  # per-residue task: seeded protein subsets up to this size
PROBE_PROTEINS = {"train": 5_000}  # per-protein tasks: a seeded subset of at most this many train proteins
PROBE_L2 = {"class": (1e-4, 1e-3, 1e-2, 1e-1), "residue": (1e-4, 1e-3, 1e-2, 1e-1),
            "regression": (1e-3, 1e-2, 1e-1, 1.0, 10.0)}  # the hyper-parameter search, chosen on valid


def read_probe_task(path):
    """data/probes/<task>.tsv.gz (columns id, split, label, sequence) -> {split: (residue arrays, labels)}:
    labels are class names (list of str), floats (np.float64 (N,)) or per-residue int64 arrays (index in
    SS_STATES, -1 for '-'), by the task's kind. Raises ValueError naming the file and line of a bad row."""
    kind = PROBE_TASKS[os.path.basename(path).split(".")[0]][0]
    out = {}
    with gzip.open(path, "rt") as f:
        header = f.readline().rstrip("\n").split("\t")
        if header != ["id", "split", "label", "sequence"]:
            raise ValueError(f"{path}: header {header}, expected id split label sequence")
        for n, line in enumerate(f, start=2):
            try:
                rid, split, label, seq = line.rstrip("\n").split("\t")
                ids = encode(seq, add_special=False)
                if kind == "regression":
                    label = float(label)
                elif kind == "residue":
                    label = np.array([SS_STATES.find(c) if c != "-" else -1 for c in label], np.int64)
                    if len(label) != len(ids) or (label < -1).any():
                        raise ValueError("a per-residue label that is not H/E/C/- of the sequence's length")
            except ValueError as e:
                raise ValueError(f"{path}: line {n}: {e}") from None
            seqs, labels = out.setdefault(split, ([], []))
            seqs.append(ids)
            labels.append(label)
    return {k: (s, np.array(l) if kind == "regression" else l) for k, (s, l) in out.items()}


@torch.no_grad()
def embed(model, seqs, per_residue=False, tokens_per_batch=16384):
    """Every layer's representation of protein sequences (residue arrays, no specials): layer 0 is the token
    embedding, layers 1..L the blocks' outputs. Mean over each sequence's residues (<cls>, <eos>, padding
    excluded): (L+1, N, D) float32; per_residue=True: (L+1, total residues, D) float32, residues in order.
    Sequences are packed with document-masked attention, as in training. A sequence longer than
    max_length - 2 residues is not truncated: it is cut into nearly equal consecutive windows of at most
    max_length - 2 residues, <cls> only on the first and <eos> only on the last (as training crops), and
    its residues pooled across them. Returns (embeddings, number of sequences windowed so)."""
    device = next(model.parameters()).device
    autocast = inference_autocast(device)
    W = model.cfg.max_length - 2
    T = max(-(-tokens_per_batch // ATTN_BLOCK), -(-model.cfg.max_length // ATTN_BLOCK)) * ATTN_BLOCK
    windows, windowed = [], 0  # (tokens, sequence index, offset of its first residue, has <cls>)
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in seqs])])
    for i, s in enumerate(seqs):
        k = max(1, -(-len(s) // W))
        windowed += k > 1
        cuts = np.linspace(0, len(s), k + 1).round().astype(int)
        for j, (a, b) in enumerate(zip(cuts[:-1], cuts[1:])):
            piece = np.concatenate([[CLS]] * (j == 0) + [s[a:b]] + [[EOS]] * (j == k - 1)).astype(np.int64)
            windows.append((piece, i, a, j == 0))
    L1, D = len(model.blocks) + 1, model.cfg.model_dim
    total = len(seqs) if not per_residue else int(offsets[-1])
    out = torch.zeros(L1, total, D, device=device)

    def run(batch):
        tokens, starts = np.full(T, PAD, np.int64), np.zeros(T, bool)
        where, target, pos = [], [], 0
        for piece, i, a, cls in batch:
            tokens[pos:pos + len(piece)], starts[pos] = piece, True
            r = np.arange(len(piece) - cls - (piece[-1] == EOS))  # the residues of this window
            where.append(pos + cls + r)
            target.append(np.full(len(r), i) if not per_residue else offsets[i] + a + r)
            pos += len(piece)
        starts[pos::ATTN_BLOCK] = True
        with autocast:
            hs = model.hidden_states(torch.from_numpy(tokens).to(device), torch.from_numpy(starts).to(device))
        where = torch.from_numpy(np.concatenate(where)).to(device)
        target = torch.from_numpy(np.concatenate(target)).to(device)
        for layer, h in enumerate(hs):
            out[layer].index_add_(0, target, h[where].float())

    batch, used = [], 0
    for w in windows:
        if used + len(w[0]) > T:
            run(batch)
            batch, used = [], 0
        batch.append(w)
        used += len(w[0])
    if batch:
        run(batch)
    if not per_residue:
        out /= torch.from_numpy(np.diff(offsets)).to(device).clamp_min(1)[None, :, None]
    return out, windowed


def composition_features(seqs, per_residue=False):
    """The baseline without a model: amino-acid composition (fractions of ids 4-28) per sequence, (1, N, 25),
    or the one-hot residue identity per residue, (1, total residues, 25); float32."""
    if per_residue:
        ids = torch.from_numpy(np.concatenate(seqs).astype(np.int64)) - RESIDUES.start
        return F.one_hot(ids, len(RESIDUES)).float()[None]
    return torch.stack([torch.bincount(torch.from_numpy(s.astype(np.int64)) - RESIDUES.start,
                                       minlength=len(RESIDUES)).float() / max(len(s), 1) for s in seqs])[None]


def fit_linear_probe(kind, X, y, l2, iters=100):
    """A linear probe on standardised features X (N, D) float32: multinomial logistic regression (kind
    class / residue; y (N,) int64; full-batch L-BFGS on mean cross-entropy + l2 |W|²/2) or ridge regression
    (kind regression; y (N,) float; closed form in float64, l2 scaled by N). Returns predict(X) -> class
    ids (N,) int64 or values (N,) float64."""
    if kind == "regression":
        X64, y64 = X.double(), torch.as_tensor(y, dtype=torch.float64, device=X.device)
        A = X64.T @ X64 + l2 * len(X64) * torch.eye(X64.shape[1], dtype=torch.float64, device=X.device)
        w = torch.linalg.solve(A, X64.T @ (y64 - y64.mean()))
        return lambda Z: (Z.double() @ w + y64.mean()).cpu().numpy()
    C = int(y.max()) + 1
    W = torch.zeros(X.shape[1], C, device=X.device, requires_grad=True)
    b = torch.zeros(C, device=X.device, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], lr=1, max_iter=iters, history_size=10, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(X @ W + b, y) + 0.5 * l2 * (W * W).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return lambda Z: (Z @ W.detach() + b.detach()).argmax(-1).cpu()


def spearman(a, b):
    """Spearman rank correlation of two 1-D arrays (average ranks for ties, as scipy.stats.spearmanr)."""
    def ranks(x):
        x = np.asarray(x, np.float64)
        order = np.argsort(x, kind="stable")
        r = np.empty(len(x))
        r[order] = np.arange(len(x))
        _, inv, counts = np.unique(x, return_inverse=True, return_counts=True)
        return (np.bincount(inv, weights=r) / counts)[inv]  # ties: their mean rank
    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = math.sqrt((ra @ ra) * (rb @ rb))
    return float(ra @ rb / denom) if denom > 0 else 0.0


def probe_metrics(kind, pred, y):
    """classification: accuracy and MCC; regression: Spearman (and Pearson)."""
    if kind == "regression":
        return dict(spearman=spearman(pred, y), pearson=float(np.corrcoef(pred, y)[0, 1]))
    y, pred = np.asarray(y), np.asarray(pred)
    C = max(int(y.max()), int(pred.max())) + 1
    confusion = np.bincount(y * C + pred, minlength=C * C).reshape(C, C)
    return dict(accuracy=float((pred == y).mean()), mcc=mcc(confusion))


def probe_layers(kind, primary, feats, labels):
    """Fit and score a linear probe on each layer. feats: {split: (layers, N, D)}, labels: {split: (N,)}.
    Per layer: the L2 strength with the best valid `primary` metric, then its valid and test metrics.
    Returns a list (one dict per layer: l2, valid, test)."""
    rows = []
    for layer in range(feats["train"].shape[0]):
        X = {k: v[layer] for k, v in feats.items()}
        mu, sd = X["train"].mean(0), X["train"].std(0).clamp_min(1e-6)
        X = {k: (v - mu) / sd for k, v in X.items()}
        y = {k: (torch.as_tensor(v, device=X["train"].device) if kind != "regression" else np.asarray(v))
             for k, v in labels.items()}
        best = None
        for l2 in PROBE_L2[kind]:
            predict = fit_linear_probe(kind, X["train"], y["train"], l2)
            valid = probe_metrics(kind, predict(X["valid"]), np.asarray(labels["valid"]))
            if best is None or valid[primary] > best[1][primary]:
                best = (l2, valid, predict)
        l2, valid, predict = best
        rows.append(dict(l2=l2, valid=valid, test=probe_metrics(kind, predict(X["test"]), np.asarray(labels["test"]))))
    return rows


def seeded_subset(lengths, proteins=None, residues=None):
    """Sorted indices of a seeded random subset of proteins (np.random.default_rng([0, N]) permutation):
    the first `proteins` of it, or its shortest prefix that holds at least `residues` residues (all when
    the split is smaller). lengths: residues per protein."""
    order = np.random.default_rng([0, len(lengths)]).permutation(len(lengths))
    n = proteins if residues is None else np.searchsorted(np.cumsum(np.asarray(lengths)[order]), residues) + 1
    return np.sort(order[:n])


def probe_benchmark(model, probe_dir="data/probes", log=print, features=None):
    """The representation benchmark: for each task of PROBE_TASKS, a linear probe per layer (train split;
    L2 chosen on valid), scored on test at the layer best on valid. features(seqs, per_residue) gives the
    (layers, N, D) features; default: embed(model, ...) (model=None with features: a baseline).
    quality_score = mean over tasks of the primary test metric at the best layer (SCL2205 MCC, secondary
    structure Q3, eSol Spearman). Returns dict(quality_score, tasks={task: dict(best_layer, score, layers)},
    seconds). Raises FileNotFoundError naming a missing task file (build it with data/make_probes.py)."""
    t0 = time.perf_counter()
    features = features or (lambda seqs, per_residue: embed(model, seqs, per_residue)[0])
    tasks = {}
    for task, (kind, primary) in PROBE_TASKS.items():
        path = os.path.join(probe_dir, f"{task}.tsv.gz")
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: probe set missing; build it with python data/make_probes.py")
        data = read_probe_task(path)
        feats, labels = {}, {}
        for split in ("train", "valid", "test"):
            seqs, y = data[split]
            if kind == "class":
                names = sorted(set(data["train"][1]))
                unknown = set(y) - set(names)
                if unknown:
                    raise ValueError(f"{path}: {split} has classes absent from train: {sorted(unknown)}")
                y = np.array([names.index(c) for c in y], np.int64)
            if kind == "residue":
                if split in PROBE_RESIDUES:
                    keep = seeded_subset([len(q) for q in seqs], residues=PROBE_RESIDUES[split])
                    seqs, y = [seqs[i] for i in keep], [y[i] for i in keep]
                y = np.concatenate(y)
                f = features(seqs, True)
                labelled = torch.from_numpy(y >= 0).to(f.device)
                feats[split], labels[split] = f[:, labelled], y[y >= 0]
            else:
                if split in PROBE_PROTEINS:  # keeps CPU runs short
                    keep = seeded_subset([len(q) for q in seqs], proteins=PROBE_PROTEINS[split])
                    seqs, y = [seqs[i] for i in keep], y[keep]
                feats[split], labels[split] = features(seqs, False), y
        rows = probe_layers(kind, primary, feats, labels)
        best = max(range(len(rows)), key=lambda i: rows[i]["valid"][primary])
        tasks[task] = dict(best_layer=best, score=rows[best]["test"][primary], metric=primary, layers=rows)
        for i, r in enumerate(rows):
            log(f"probe {task} layer {i}: valid {primary} {r['valid'][primary]:.4f} | test "
                + " ".join(f"{k} {v:.4f}" for k, v in r["test"].items()) + (" <- best on valid" if i == best else ""))
    score = float(np.mean([t["score"] for t in tasks.values()]))
    return dict(quality_score=score, tasks=tasks, seconds=time.perf_counter() - t0)


def probe_main(argv):
    """`python train_plm.py probe MODEL [--probe_dir DIR] [--skip_baselines] [--out JSON]`: the benchmark on
    a saved model, beside a randomly initialised model of the same shape (output projections random too, not
    zero as for training) and the composition baseline."""
    ap = argparse.ArgumentParser(prog="train_plm.py probe", allow_abbrev=False)
    ap.add_argument("model", help="export folder (model.safetensors + config.json) or checkpoint .pt")
    ap.add_argument("--probe_dir", default="data/probes",
                    help="the labelled probe sets, *.tsv.gz (data/make_probes.py; default data/probes)")
    ap.add_argument("--skip_baselines", action="store_true", help="only the trained model")
    ap.add_argument("--out", default="", help="also write the results as JSON here")
    args = ap.parse_args(argv[1:])
    check_out_folder(ap, args.out)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, cfg = load_model(args.model, device)
    print(f"== trained model: {args.model}")
    runs = {"trained": probe_benchmark(model, args.probe_dir)}
    if not args.skip_baselines:
        torch.manual_seed(cfg.seed)
        random_model = ProteinLM(cfg)
        for p in random_model.parameters():  # zero-initialised output projections would make every block the
            if p.dim() == 2 and not p.any():  # identity: a random model's layers then all equal its embedding
                init_linear(p)
        print("== random_init: a model of the same shape, not trained")
        runs["random_init"] = probe_benchmark(random_model.to(device).eval(), args.probe_dir)
        print("== composition: amino-acid composition per protein, one-hot residue per residue (no model)")
        runs["composition"] = probe_benchmark(
            None, args.probe_dir, features=lambda s, r: composition_features(s, r).to(device))
    print("\n| model | quality_score | "
          + " | ".join(f"{t} ({m}, best layer)" for t, (_, m) in PROBE_TASKS.items()) + " |")
    print("|---|---|" + "---|" * len(PROBE_TASKS))
    for name, r in runs.items():
        print(f"| {name} | {r['quality_score']:.4f} | " + " | ".join(
            f"{r['tasks'][t]['score']:.4f} (layer {r['tasks'][t]['best_layer']})" for t in PROBE_TASKS) + " |")
    n_layers = len(runs["trained"]["tasks"]["scl2205"]["layers"])
    print(f"\nper layer, test (trained{' / random init' if 'random_init' in runs else ''}):")
    for i in range(n_layers):
        print(f"layer {i}: " + " | ".join(f"{t} " + " / ".join(f"{runs[n]['tasks'][t]['layers'][i]['test'][m]:.4f}"
                                                              for n in runs if n != "composition")
                                          for t, (_, m) in PROBE_TASKS.items()))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(runs, f, indent=1)
    return runs


# ----------------------------------------------------------------------------------------------------------
# Logging.


class Logger:
    """Rank 0 writes logs/<run_id>.txt: this file's source, versions, nvidia-smi, config, then one line per
    logged step and per evaluation (a resumed run appends to it). With cfg.wandb it also sends config and
    metrics to Weights & Biases (imported only then; the API key comes from the environment). Other ranks
    stay silent."""

    def __init__(self, cfg, rank, resumed=False):
        self.file, self.bar, self.wandb = None, rank == 0 and sys.stdout.isatty(), None
        if rank != 0:
            return
        os.makedirs(cfg.log_dir, exist_ok=True)
        self.path = os.path.join(cfg.log_dir, f"{cfg.run_id}.txt")
        self.file = open(self.path, "a" if resumed and os.path.exists(self.path) else "w")
        if self.file.tell() == 0:
            self.file.write(SOURCE + "=" * 100 + "\n")
        if cfg.wandb:
            import wandb
            self.wandb = wandb.init(project=cfg.wandb_project, name=cfg.run_id, id=cfg.run_id, resume="allow",
                                    config=dataclasses.asdict(cfg), dir=cfg.log_dir)

    def __call__(self, msg, console=True):
        if self.file is None:
            return
        if console:
            print(("\r\033[K" if self.bar else "") + msg, flush=True)
        self.file.write(msg + "\n")
        self.file.flush()

    def metrics(self, step, values):
        if self.wandb is not None:
            self.wandb.log(values, step=step)

    def progress(self, step, total, msg):
        if self.bar:
            n = int(30 * step / total)
            print(f"\r[{'#' * n}{'.' * (30 - n)}] {step}/{total} {msg}", end="", flush=True)

    def close(self):
        if self.wandb is not None:
            self.wandb.save(self.path, base_path=os.path.dirname(self.path), policy="now")
            self.wandb.finish()
        if self.file is not None:
            self.file.close()


def environment_report(device):
    lines = [f"python {platform.python_version()} | torch {torch.__version__} | numpy {np.__version__} | "
             f"cuda {torch.version.cuda} | host {platform.node()}"]
    if device.type == "cuda":
        try:
            lines.append(subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=20).stdout)
        except (OSError, subprocess.TimeoutExpired) as e:
            lines.append(f"nvidia-smi unavailable: {e}")
    return "\n".join(lines)


def measure_peak_flops(device):
    """bf16 matrix rate of this GPU (FLOP/s), the MFU denominator: the fastest of 20 timed 8192³ products after 3
    untimed ones. The fastest, not the median: at the boost clock that the first products of a burst run at, the
    rate the H200's ~790 TFLOP/s refers to. Under sustained load the clocks fall with power; one H200 read 705-779
    as the median of 10 (four runs), 633-663 after 1 s of load (records/2026-12-01_FusionLimits)."""
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(20):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        a @ b
        e.record()
        e.synchronize()
        times.append(s.elapsed_time(e) / 1e3)
    return 2 * 8192 ** 3 / min(times)


# ----------------------------------------------------------------------------------------------------------
# Main loop.


STOP_CHECK_EVERY = 5  # steps: how often several ranks agree on a stop request (SIGTERM / SIGINT)
STOPPED_EXIT = 75  # exit status of a run stopped by a signal after its checkpoint (sysexits' EX_TEMPFAIL: retry)


class Refusal(SystemExit):
    """A run or mode refused for its input: flags the checks after parsing reject, missing or broken files,
    checkpoints that do not fit, hardware a flag needs. str(e) is the one-line message. Run as a script, the
    message goes to stderr and the exit status is 2, as for argparse's flag errors; 1 stays for runs that fail
    (a traceback, a non-finite loss), 75 for runs stopped by a signal."""


def main(argv=None):
    """Command line: train (flags of Config), or the modes generate / score / probe; returns their result
    (None: training stopped by a signal). Missing or unreadable files and bad sequences end with a one-line
    error (SystemExit) instead of a traceback."""
    argv = sys.argv[1:] if argv is None else list(argv)
    mode = argv[0] if argv and argv[0] in ("generate", "score", "probe") else None
    prog = f"train_plm.py {mode}" if mode else "train_plm.py"
    try:
        if mode:
            return (probe_main if mode == "probe" else sample_main)(argv)
        return train(argv)
    except (FileNotFoundError, ShardError) as e:  # missing or broken data: the message names the file
        raise Refusal(f"{prog}: error: {error_text(e)}") from None
    except (OSError, EOFError, ValueError) as e:
        if mode is None:
            raise  # in training these are not user errors: keep the traceback
        raise Refusal(f"{prog}: error: {error_text(e)}") from None


def error_text(e):
    """An OSError raised by open() as 'FILE: reason' (e.g. 'x.fasta: No such file or directory'), as the
    other errors name their file first; any other exception's own text."""
    if isinstance(e, OSError) and e.filename is not None and e.strerror:
        return f"{e.filename}: {e.strerror}"
    return str(e)


def gradients(params):
    """Each parameter's .grad, in order; zeros for one without (an unused parameter: the empty skip weights of a
    1-block model), so the step's gradient sums have one tensor per parameter."""
    return [torch.zeros_like(p) if p.grad is None else p.grad for p in params]


class MicroBatchGraph:
    """One micro-batch's forward and backward, captured once as a CUDA graph (torch.cuda.CUDAGraph) and replayed for
    every training micro-batch: the same kernels in the same order (the same bits), without the host launching each
    one. Launched from Python, the compiled regions, the autograd engine and the Triton kernels keep the host nearly
    as busy as the GPU (under the profiler's overhead, the GPU waited 155 ms per reference step). On an H200 with a
    fast host the graph shortened reference steps by 0.4-0.7% (records/2026-12-01_CUDAGraphs); a slower host, or
    several processes sharing one, should gain more (not measured).

    model(inputs...) with labels returns the loss; backward of loss / scale fills every parameter's gradient.
    Capture after every region has compiled (capture cannot compile): train() does it at the end of its warm-up.
    example: the model's inputs for one micro-batch (tokens, starts, labels, weights or None, rows or None), CUDA
    tensors; every later call must give the same shapes and dtypes (tokens_per_micro_batch fixes them) and the same
    Nones. __call__(*inputs) copies them into the graph's own input tensors, refreshes the FP8 weight copies in
    place (ProteinLM.fp8_casts, read by the graph), replays, and returns (loss () float32, grads: one tensor per
    model.parameters(), in that order); both are the graph's own memory, overwritten by the next replay."""

    def __init__(self, model, example, scale, autocast):
        self.model, params = model, list(model.parameters())
        self.addresses = [p.data_ptr() for p in params]  # the graph reads the parameters where they are now
        self.inputs = [None if t is None else t.clone() for t in example]
        self.fp8 = fp8_active(model.cfg.fp8, example[0])

        def forward_backward():
            with autocast:
                loss = model(*self.inputs)
            (loss / scale).backward()
            return loss

        model.zero_grad(set_to_none=True)
        # the caching allocator keeps freed blocks per stream and apart from a graph's pool: the memory cached by
        # the eager steps, then by the side stream, goes back before each next user (reference preset, H200: a
        # peak of 63.2 GiB reserved without these two calls, 34.2 with them, 33.6 for the eager path;
        # records/2026-12-01_GraphMemory)
        torch.cuda.empty_cache()
        side = torch.cuda.Stream()  # warm-up on a side stream before capture, as torch.cuda.graphs' docs ask
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            forward_backward()
        torch.cuda.current_stream().wait_stream(side)
        model.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()
        if self.fp8:
            model.fp8_casts()  # up to date before capture: the graph reads the cache, never recasts
        self.graph = torch.cuda.CUDAGraph()
        # thread_local: the loader's thread may pin host memory meanwhile, which the default mode refuses
        with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
            self.loss = forward_backward()
        self.grads = gradients(params)
        model.zero_grad(set_to_none=True)

    def __call__(self, *inputs):
        def kinds(ts):
            return [None if t is None else (tuple(t.shape), t.dtype) for t in ts]

        if kinds(inputs) != kinds(self.inputs):
            raise ValueError(f"MicroBatchGraph: inputs of shapes and dtypes {kinds(inputs)}; the capture had "
                             f"{kinds(self.inputs)}")
        if [p.data_ptr() for p in self.model.parameters()] != self.addresses:
            raise RuntimeError("MicroBatchGraph: a parameter moved since the capture (model.to(), load_state_dict "
                               "with assign=True, p.data = ...): the graph would read its old memory")
        for mine, t in zip(self.inputs, inputs):
            if mine is not None:
                mine.copy_(t)
        if self.fp8:
            self.model.fp8_casts()
        self.graph.replay()
        return self.loss, self.grads


def train(argv):
    """The training run: returns the RESULT dict (None when stopped by a signal)."""
    cfg = parse_config(argv)
    distributed = "RANK" in os.environ
    if distributed:
        rank, world_size, local_rank = (int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    else:
        rank, world_size, local_rank = 0, 1, 0
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
        if cfg.preset in GPU_PRESETS:
            raise Refusal(f"train_plm.py: error: --preset {cfg.preset} is sized for GPUs (hours and tens of GB "
                          "on a CPU) and this machine has none: use --preset cpu, with any flag on top")
    if distributed:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    ckpt = None
    if cfg.resume:  # continue a run: its config, with only the flags given here on top
        ckpt, ckpt_path = load_checkpoint(cfg.resume, cfg.out_dir, cfg.run_id)
        if missing := [k for k in CHECKPOINT_KEYS if not (isinstance(ckpt, dict) and k in ckpt)]:
            raise Refusal(f"{ckpt_path}: not a training checkpoint of train_plm.py (a ckpt_*.pt written by "
                          f"--save_every or a stop signal; an exported model cannot resume training): no "
                          f"{', '.join(missing)} in it")
        resume_flag = cfg.resume
        cfg = parse_config(argv, base=ckpt["config"])
        old = {k: ckpt["config"].get(k, getattr(Config, k)) for k in SHAPE_FIELDS}
        if old != {k: getattr(cfg, k) for k in SHAPE_FIELDS}:
            raise Refusal(f"{ckpt_path}: checkpoint of a model with {old}; this run asks for "
                          f"{ {k: getattr(cfg, k) for k in SHAPE_FIELDS} }: refusing to resume")
        # checkpoints are written at step boundaries, where every rank stands at the same place in the one
        # global stream: any process count that divides the step's micro-batches resumes it
        if any(pos != ckpt["data_positions"][0] for pos in ckpt["data_positions"]):
            raise Refusal(f"{ckpt_path}: its ranks' data positions differ ({ckpt['data_positions']}); "
                          "a checkpoint of this train_plm.py has one position for all: refusing to resume")
        cfg.resume = resume_flag
        if ckpt.get("target") and cfg.stop_at_target:
            raise Refusal(f"{ckpt_path}: this run reached target_val_loss {cfg.target_val_loss} at step "
                          f"{ckpt['target']['step']} and stopped there; nothing to resume "
                          "(--stop_at_target false trains on to --steps)")
    if cfg.hub_repo and not os.environ.get("HF_TOKEN"):
        raise Refusal("train_plm.py: error: --hub_repo uploads with the token in the environment variable HF_TOKEN, "
                      "which is not set")
    if cfg.compile and device.type != "cuda":  # CPU attention: scaled_dot_product_attention on each sequence
        raise Refusal("train_plm.py: error: --compile true needs a GPU: on CPU, attention runs on each sequence's "
                      "slice of the micro-batch, so every new packing would recompile")
    if cfg.fp8 and (refusal := fp8_refusal(device)):
        raise Refusal(refusal)
    if not cfg.run_id:
        stamp = time.strftime("%Y%m%d_%H%M%S")
        if distributed:  # every rank must agree on the run id
            obj = [stamp]
            dist.broadcast_object_list(obj, 0)
            stamp = obj[0]
        cfg.run_id = f"{cfg.preset}_{stamp}"
    # the shards before the log: a missing file stops the run with one line and leaves no log behind
    train_paths = resolve_files(cfg.train_files, "train")
    valid_paths = resolve_files(cfg.valid_files, "valid")
    test_paths = resolve_files(cfg.test_files, "test")
    log = Logger(cfg, rank, resumed=ckpt is not None)
    log(environment_report(device), console=False)
    log("config " + json.dumps(dataclasses.asdict(cfg)))
    if cfg.objective == "mlm_to_diffusion" and cfg.mlm_steps >= cfg.steps:
        log(f"note: mlm_to_diffusion with mlm_steps {cfg.mlm_steps} >= steps {cfg.steps}: this run trains MLM only")
    micro_per_step = cfg.tokens_per_step // (cfg.tokens_per_micro_batch * world_size)
    per_round = cfg.tokens_per_micro_batch * world_size  # one micro-batch on every process
    if micro_per_step < 1 or micro_per_step * per_round != cfg.tokens_per_step:
        fit = max(1, round(cfg.tokens_per_step / per_round)) * per_round
        msg = (f"train_plm.py: error: tokens_per_step {cfg.tokens_per_step} is not a positive multiple of "
               f"tokens_per_micro_batch {cfg.tokens_per_micro_batch} x {world_size} process(es) = {per_round} "
               f"(whole micro-batches on every process): use --tokens_per_step {fit}, a smaller "
               "--tokens_per_micro_batch or fewer processes (each trains differently)")
        log(msg, console=False)
        raise Refusal(msg) if rank == 0 else SystemExit(2)  # printed once, not by every rank
    log(f"device {device} | world_size {world_size} | gradient accumulation {micro_per_step} micro-batches")

    # a seed trains the same bits on any number of GPUs that leaves a power-of-two micro_per_step, and across
    # machines of one kind (records/2026-11-30_InductorDeterministic: 1 GPU of two H200 machines, 2 of a third;
    # tests: 1, 2 and 4 CPU ranks; one 2-GPU run of records/2026-11-30_MuonSets did not, when inductor's
    # deterministic mode did not hold): embedding gradients as one-hot products (sum_by_index), tree_sum's
    # order, Muon's sets (its Newton-Schulz batches, the same for any GPU count), and inductor's deterministic
    # mode (INDUCTOR_OPTIONS)
    torch._inductor.config.inductor_choices_class = KernelChoices  # persistent reductions of 2,048-wide rows
    # model and optimizers (the same seed on every rank gives the same initial weights)
    torch.manual_seed(cfg.seed)
    model = ProteinLM(cfg).to(device)
    params = list(model.parameters())
    n_params = sum(p.numel() for p in params)
    log(f"parameters {n_params:,}")
    if cfg.max_params and n_params >= cfg.max_params:
        raise Refusal(f"train_plm.py: error: {n_params:,} parameters: the speed track allows fewer than "
                      f"{cfg.max_params:,} (--max_params 0 lifts the cap for runs that are not speed-track records)")
    opts, counts = make_optimizers(model, cfg, device.type == "cuda", rank, world_size)
    log("optimizer groups " + ", ".join(f"{k}: {n} tensors / {m:,} params" for k, (n, m) in counts.items()))
    if cfg.compile:
        compile_regions(model)
    autocast = torch.autocast("cuda", torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    mask_gen = torch.Generator(device)  # re-seeded per global micro-batch: masks independent of the GPU count
    capacity = prediction_capacity(cfg.tokens_per_micro_batch, cfg.mask_rate) if cfg.objective == "mlm" else None
    unscored = torch.zeros((), dtype=torch.int64, device=device)  # masked positions beyond capacity: checked
    # with the loss's finiteness (check_finite), never expected (8 standard deviations)

    valid, valid_counts = eval_batches(valid_paths, cfg)
    val_entropy = unigram_entropy(valid_counts)
    nelbo_grid = nelbo_batches(valid_paths, cfg) if cfg.nelbo_grid else []
    valid_residues = int(valid_counts[RESIDUES.start:RESIDUES.stop].sum())
    test_batches, _ = eval_batches(test_paths, cfg)
    valid_quarter = valid[::4]  # the target's cheap check (every 4th batch); the whole shard confirms
    log(f"train shards {len(train_paths)} | valid {len(valid)} batches, unigram entropy {val_entropy:.4f} nats")

    def next_inputs(loader, step):
        """The model's inputs for the loader's next micro-batch at this step: (inputs, starts, labels, weights or
        None, rows or None), the training mask seeded by the micro-batch's global index."""
        tokens, starts, g = loader.next()
        mask_gen.manual_seed((cfg.seed << 32) + g)
        if cfg.objective == "mlm":
            inputs, labels = mask_tokens(tokens, cfg.mask_rate, mask_gen, cfg.mlm_80_10_10)
            rows = None
            if capacity:  # the last block after its attention, and the head, at the masked rows (same loss)
                rows, lost = prediction_rows(labels, capacity)
                unscored.add_(lost)
            return inputs, starts, labels, None, rows
        if step < cfg.mlm_steps and cfg.objective == "mlm_to_diffusion":
            # MLM itself; its mean CE written as weights, so both phases share one compiled graph
            inputs, labels = mask_tokens(tokens, cfg.mask_rate, mask_gen, cfg.mlm_80_10_10)
            chosen = labels != -100
            return inputs, starts, labels, chosen.float() / chosen.sum().clamp_min(1), None
        inputs, labels, weights = diffusion_mask(tokens, starts, *diffusion_t_range(step, cfg), mask_gen)
        return inputs, starts, labels, weights, None

    def train_step(loader, step):
        mult = lr_multiplier(step, cfg)
        for opt in opts:
            for g in opt.param_groups:
                g["lr"] = g["initial_lr"] * mult
        frac = min(step / cfg.muon_momentum_warmup_steps, 1) if cfg.muon_momentum_warmup_steps else 1
        opts[1].param_groups[0]["momentum"] = 0.85 + frac * (cfg.muon_momentum - 0.85)
        loss_sum, real, sumsq = torch.zeros((), device=device), 0, 0
        # each micro-batch's gradient on its own, summed in tree_sum's order: the first half's are kept, the
        # second half's added to them, then tree_sum; with a power-of-two micro_per_step, the bits do not
        # depend on the number of GPUs
        parts, half = [], (micro_per_step + 1) // 2
        for j in range(micro_per_step):
            inputs = next_inputs(loader, step)
            real, sumsq = real + loader.last[0], sumsq + loader.last[1]
            if graph is not None:
                loss, grads = graph(*inputs)
                grads = [g.clone() for g in grads] if j < half else grads  # the next replay overwrites them
            else:
                with autocast:
                    loss = model(*inputs)
                (loss / (micro_per_step * world_size)).backward()  # the ranks' gradients are summed
                grads = gradients(params)
                model.zero_grad(set_to_none=True)
            loss_sum += loss.detach()
            if j < half:
                parts.append(grads)
            else:
                torch._foreach_add_(parts[j - half], grads)
        for p, g in zip(params, tree_sum(parts)):
            p.grad = g
        adam, muon = opts
        if world_size > 1:  # Adam's small gradients: every rank's, gathered in flight while Muon works
            grads = [p.grad for g in adam.param_groups for p in g["params"]]
            flat = torch.cat([g.flatten() for g in grads])
            every = flat.new_empty(world_size * flat.numel())
            work = all_gather(every, flat, async_op=True)
        muon.step()  # sums its gradients across ranks, orthogonalises this rank's matrices, all-gathers
        if world_size > 1:
            work.wait()
            flat = tree_sum([[row] for row in every.view(world_size, -1).unbind(0)])[0]
            torch._foreach_copy_(grads, [f.view_as(g) for f, g in zip(flat.split([g.numel() for g in grads]), grads)])
        adam.step()
        model.zero_grad(set_to_none=True)
        return loss_sum / micro_per_step, real, sumsq

    # warm-up: compile on throw-away steps, then restore the initial model, optimizer and data state
    warmup_s = first_step_s = 0.0
    graph = None  # MicroBatchGraph (cfg.cuda_graph), captured at the end of the warm-up
    if cfg.compile:
        t = time.perf_counter()
        state = copy.deepcopy(model.state_dict())
        opt_states = [copy.deepcopy(o.state_dict()) for o in opts]
        loader = PackedLoader(train_paths, cfg, rank, world_size, device, cfg.seed)
        for s in range(2):
            train_step(loader, s)
            if s == 0:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                first_step_s = time.perf_counter() - t
        evaluate(model, valid[:1], device, 0, 1, autocast)
        if cfg.cuda_graph and device.type == "cuda":
            if triton is not None and cfg.model_dim // cfg.num_heads in ATTN_HEAD_DIMS:
                graph = MicroBatchGraph(model, next_inputs(loader, 0), micro_per_step * world_size, autocast)
            else:  # segment_attention reads each micro-batch's sequence lengths on the host: nothing to capture
                log(f"note: --cuda_graph true needs doc_attention (Triton, head size in {ATTN_HEAD_DIMS}); head size "
                    f"{cfg.model_dim // cfg.num_heads}{'' if triton is not None else ' without Triton'}: micro-batches "
                    "run eagerly")
        model.load_state_dict(state)
        for o, st in zip(opts, opt_states):
            o.load_state_dict(st)
        if device.type == "cuda":
            torch.cuda.synchronize()
        warmup_s = time.perf_counter() - t
        log(f"warm-up (compile + 2 steps + 1 eval batch{' + CUDA graph capture' if graph else ''}, then state reset) "
            f"{warmup_s:.1f}s, of which compile + first step {first_step_s:.1f}s")
        del state, opt_states
    peak = measure_peak_flops(device) if device.type == "cuda" else None
    if peak:
        log(f"measured bf16 matmul peak {peak / 1e12:.0f} TFLOP/s")

    # training state: everything a checkpoint holds, so a resumed run continues exactly
    start_step, train_time, tokens_seen, padded_seen, sumsq_seen, val = 0, 0.0, 0, 0, 0, None
    target = None  # where target_val_loss was first reached: dict(step, time = training clock in s)
    data_start = (0, 0, 0)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        for o, st in zip(opts, ckpt["optimizers"]):
            lrs = [g["initial_lr"] for g in o.param_groups]
            o.load_state_dict(st)
            for g, lr in zip(o.param_groups, lrs):  # learning-rate flags given with --resume apply
                g["initial_lr"] = lr
        if ckpt["step"] > cfg.steps:
            raise Refusal(f"{ckpt_path}: checkpoint at step {ckpt['step']}, past --steps {cfg.steps}")
        start_step, train_time, val = ckpt["step"], ckpt["train_time"], ckpt["val"]
        tokens_seen, padded_seen, sumsq_seen = ckpt["tokens_seen"], ckpt["padded_seen"], ckpt["sumsq_seen"]
        data_start = tuple(ckpt["data_positions"][0])
        target = ckpt.get("target")
        was = ckpt["world_size"]
        log(f"resumed from {ckpt_path} at step {start_step}"
            + (f" (written by {was} processes)" if was != world_size else "")
            + ("" if ckpt["source"] == SOURCE else " (warning: train_plm.py changed since it was written)"))
        del ckpt
    loader = PackedLoader(train_paths, cfg, rank, world_size, device, cfg.seed, start=data_start)
    last_ckpt = None

    def checkpoint(step_done):
        per_rank = [list(loader.position)]
        if world_size > 1:
            per_rank = [None] * world_size
            dist.all_gather_object(per_rank, list(loader.position))
        opt_states = [opts[0].state_dict(), opts[1].gathered_state_dict()]  # collective: every rank calls it
        path = os.path.join(cfg.out_dir, cfg.run_id, f"ckpt_{step_done:06d}.pt")
        if rank == 0:
            save_checkpoint(path, dict(
                config=dataclasses.asdict(cfg), source=SOURCE, world_size=world_size, step=step_done,
                model=model.state_dict(), optimizers=opt_states, train_time=train_time,
                tokens_seen=tokens_seen, padded_seen=padded_seen, sumsq_seen=sumsq_seen, val=val,
                data_positions=per_rank, target=target))
            log(f"checkpoint {path}")
        return path

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    step_events = []
    last_log_tokens, last_log_time = tokens_seen, train_time
    nonfinite = torch.zeros((), dtype=torch.bool, device=device)  # checked at log and save steps: no sync per step
    checked = start_step  # steps up to here are known finite

    def check_finite(step):
        nonlocal checked
        if nonfinite.item():
            raise SystemExit(f"non-finite train loss in steps {checked + 1}-{step + 1} (checked at log and save "
                             f"steps); "
                             f"last good checkpoint: {last_ckpt or 'none'}. "
                             "Lower the learning rates, or check the data, then resume from it.")
        if lost := unscored.item():
            raise SystemExit(f"MLM masked more positions in a micro-batch than the {capacity} rows its loss reads "
                             f"(prediction_capacity: 8 standard deviations above the mean): {lost} left out of the "
                             f"loss in steps up to {step + 1}; last good checkpoint: {last_ckpt or 'none'}")
        checked = step + 1

    def validate(step_done):
        """The 15% MLM protocol; plus the NELBO for diffusion objectives, and for every objective at the end."""
        v = evaluate(model, valid, device, rank, world_size, autocast)
        nelbo = ""
        if nelbo_grid and (cfg.objective != "mlm" or step_done == cfg.steps):
            v["nelbo"] = validation_nelbo(model, nelbo_grid, valid_residues, device, rank, world_size, autocast)
            nelbo = f" val_nelbo:{v['nelbo']:.4f}"
        log(f"step:{step_done}/{cfg.steps} val_loss:{v['loss']:.4f} val_ppl:{v['perplexity']:.3f} "
            f"val_acc:{v['accuracy']:.4f} val_f1:{v['f1']:.4f} val_mcc:{v['mcc']:.4f}{nelbo} "
            f"train_time:{train_time:.1f}s tokens:{tokens_seen:,}")
        log.metrics(step_done, {f"val_{k}": v for k, v in v.items()})
        return v

    # SIGTERM / SIGINT: finish the current step, write a checkpoint, exit cleanly
    stop = []
    handlers = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            handlers[sig] = signal.signal(sig, lambda signum, frame: stop.append(signal.Signals(signum).name))

    try:
        if world_size > 1:  # start the clock when every rank is ready (ranks finish compiling at different times)
            dist.all_reduce(torch.zeros(1, device=device))
        sync()
        t0 = time.perf_counter()
        for step in range(start_step, cfg.steps):
            loss, real, sumsq = train_step(loader, step)
            nonfinite |= ~torch.isfinite(loss)
            tokens_seen += real
            padded_seen += cfg.tokens_per_step - real
            sumsq_seen += sumsq
            if device.type == "cuda":
                step_events.append(torch.cuda.Event(enable_timing=True))
                step_events[-1].record()
            last = step == cfg.steps - 1
            at_log = (step + 1) % cfg.log_every == 0 or last
            if at_log:
                sync()
                now = train_time + time.perf_counter() - t0
                if world_size > 1:
                    dist.all_reduce(loss, op=dist.ReduceOp.AVG)
                loss_val = loss.item()  # the step's mean train loss over all micro-batches of all ranks
                tps = (tokens_seen - last_log_tokens) / max(now - last_log_time, 1e-9)
                last_log_tokens, last_log_time = tokens_seen, now
                log(f"step:{step + 1}/{cfg.steps} train_loss:{loss_val:.4f} lr_mult:{lr_multiplier(step, cfg):.3f} "
                    f"tokens/s:{tps:,.0f} train_time:{now:.1f}s padding:{padded_seen / (padded_seen + tokens_seen):.4f}")
                log.metrics(step + 1, dict(train_loss=loss_val, lr_mult=lr_multiplier(step, cfg), tokens_per_s=tps,
                                           train_time_s=now))
                log.progress(step + 1, cfg.steps, f"loss {loss_val:.3f}")
                check_finite(step)
            full = (cfg.eval_every and (step + 1) % cfg.eval_every == 0) or last
            check = cfg.target_val_loss and not target and (step + 1) % cfg.target_every == 0
            if full or check:
                sync()
                train_time += time.perf_counter() - t0
                if check and not full:  # a quarter of the shard; near the target, the whole shard decides
                    quarter = evaluate(model, valid_quarter, device, rank, world_size, autocast)["loss"]
                    log(f"step:{step + 1}/{cfg.steps} val_loss_quarter:{quarter:.4f} train_time:{train_time:.1f}s")
                    full = quarter <= cfg.target_val_loss + TARGET_SLACK
                if full:
                    val = validate(step + 1)
                    if cfg.target_val_loss and not target and val["loss"] <= cfg.target_val_loss:
                        t = evaluate(model, test_batches, device, rank, world_size, autocast)
                        target = dict(step=step + 1, time=train_time)
                        log(f"target val_loss {cfg.target_val_loss} reached: step {step + 1}, train_time "
                            f"{train_time:.2f}s, val_loss {val['loss']:.4f}, test_loss {t['loss']:.4f}")
                sync()
                t0 = time.perf_counter()
            # a stop request is acted on after this step alone; with several ranks every STOP_CHECK_EVERY steps
            # and at log steps, where they agree (one host sync), on the agreed flag only: a signal that lands
            # after the agreement waits for the next check (acting on it at once desynchronises the ranks'
            # collectives: one writes a checkpoint while the other trains on)
            stopping = bool(stop) and world_size == 1
            if world_size > 1 and (at_log or (step + 1) % STOP_CHECK_EVERY == 0):
                flag = torch.tensor(float(bool(stop)), device=device)
                dist.all_reduce(flag)
                stopping = bool(flag.item())
                if stopping and not stop:
                    stop.append("stop request of another rank")
            if (cfg.save_every and (step + 1) % cfg.save_every == 0) or stopping:
                sync()
                train_time += time.perf_counter() - t0
                check_finite(step)  # a checkpoint of NaN weights is never the "last good" one
                last_ckpt = checkpoint(step + 1)
                t0 = time.perf_counter()
            if stopping:
                one_node = int(os.environ.get("LOCAL_WORLD_SIZE", world_size)) == world_size
                launcher = ("python" if not distributed else
                            f"torchrun{' --standalone' if one_node else ''} --nproc_per_node={world_size}")
                log(f"{stop[0]}: stopped after step {step + 1}; continue with: {launcher} train_plm.py "
                    f"--resume {last_ckpt}")
                log.close()
                if distributed:
                    dist.destroy_process_group()
                return None
            if target and cfg.stop_at_target:
                break
        sync()
        train_time += time.perf_counter() - t0
        if start_step == cfg.steps:  # resumed at the final step: its evaluation may not have run
            val = validate(cfg.steps)
    finally:
        for sig, h in handlers.items():
            signal.signal(sig, h)

    if graph is not None:  # its memory (one micro-batch's activations) back for the last evaluations, export, probes
        graph = None
        torch.cuda.empty_cache()
    steps_done = step + 1 if cfg.steps > start_step else start_step
    if nelbo_grid and "nelbo" not in val:  # stopped at the target: the end-of-run NELBO still comes
        val["nelbo"] = validation_nelbo(model, nelbo_grid, valid_residues, device, rank, world_size, autocast)
    test = evaluate(model, test_batches, device, rank, world_size, autocast)
    log(f"test_loss:{test['loss']:.4f} test_ppl:{test['perplexity']:.3f} test_acc:{test['accuracy']:.4f} "
        f"test_f1:{test['f1']:.4f} test_mcc:{test['mcc']:.4f}")

    tokens_total = tokens_seen  # real tokens of all ranks (the loader counts every rank's)
    step_ms = None
    if step_events:
        step_events[-1].synchronize()
        dts = [a.elapsed_time(b) for a, b in zip(step_events[:-1], step_events[1:])]
        step_ms = float(np.median(dts[len(dts) // 10:])) if dts else None  # steady state: skip the first 10%
    mean_sq = sumsq_seen / max(tokens_seen, 1)
    fpt = flops_per_token(model, mean_sq, capacity / cfg.tokens_per_micro_batch if capacity else 1.0)
    tps = tokens_total / max(train_time, 1e-9)
    # peak_memory_gib: the most the CUDA caching allocator held over the run (warm-up, the graph's pool, the last
    # evaluations), in GiB: what a GPU needs to run this config
    digest = hashlib.sha256()  # of the final weights: runs that trained the same bits print the same digest
    for t in model.state_dict().values():
        digest.update(t.detach().cpu().contiguous().view(torch.uint8).numpy())
    result = dict(preset=cfg.preset, objective=cfg.objective, fp8=cfg.fp8, seed=cfg.seed, world_size=world_size,
                  val_loss=round(val["loss"], 5), val_nelbo=round(val["nelbo"], 5) if "nelbo" in val else None,
                  val_perplexity=round(val["perplexity"], 4), val_accuracy=round(val["accuracy"], 5),
                  val_f1=round(val["f1"], 5), val_mcc=round(val["mcc"], 5),
                  val_unigram_entropy=round(val_entropy, 5), test_loss=round(test["loss"], 5),
                  target_val_loss=cfg.target_val_loss or None, target_reached=bool(target),
                  time_to_target_s=target and round(target["time"], 2), steps=steps_done, tokens=tokens_total,
                  train_time_s=round(train_time, 2),
                  gpu_hours=round(world_size * train_time / 3600, 5) if device.type == "cuda" else 0.0,
                  tokens_per_s=round(tps), step_time_ms_median=step_ms and round(step_ms, 1),
                  padding_frac=round(padded_seen / max(padded_seen + tokens_seen, 1), 5),
                  flops_per_token=round(fpt), mfu=peak and round(fpt * tps / (peak * world_size), 4),
                  warmup_s=round(warmup_s, 1), first_step_s=round(first_step_s, 1),
                  peak_memory_gib=round(torch.cuda.max_memory_reserved(device) / 2**30, 2) if device.type == "cuda"
                  else None, params=n_params,
                  device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                  weights_sha256=digest.hexdigest()[:16], run_id=cfg.run_id)
    if rank == 0 and cfg.save_model:
        folder = export_model(model, cfg, os.path.join(cfg.out_dir, cfg.run_id))
        log(f"exported {folder}/model.safetensors and config.json (train_plm.load_model loads them)")
        if cfg.hub_repo:
            from huggingface_hub import HfApi
            api = HfApi(token=os.environ["HF_TOKEN"])
            api.create_repo(cfg.hub_repo, exist_ok=True)
            api.upload_folder(folder_path=folder, repo_id=cfg.hub_repo, allow_patterns=["*.safetensors", "*.json"])
            log(f"uploaded to https://huggingface.co/{cfg.hub_repo}")
    if cfg.probe and rank == 0:
        probes = probe_benchmark(model.eval(), cfg.probe_dir, log)
        log(f"probes: quality_score {probes['quality_score']:.4f} in {probes['seconds']:.0f}s")
        result["quality_score"] = round(probes["quality_score"], 5)
        result.update({f"probe_{t}": round(r["score"], 5) for t, r in probes["tasks"].items()})
    log.metrics(steps_done, {f"test_{k}": v for k, v in test.items()})
    log("RESULT " + json.dumps(result))
    log.close()
    if distributed:
        dist.destroy_process_group()
    return result


if __name__ == "__main__":
    try:
        result = main()
    except Refusal as e:
        print(e, file=sys.stderr)
        sys.exit(2)
    sys.exit(STOPPED_EXIT if result is None else 0)  # a run stopped by a signal is not a finished one
