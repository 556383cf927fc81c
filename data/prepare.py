#!/usr/bin/env python3
"""Convert protein FASTA / plain-text sequence files into ESM-2 token shards.

What it does
------------
Reads FASTA or FASTA.gz files (multi-line records, Windows line endings allowed) or plain text with
one sequence per line (auto-detected: a file with no line starting with '>'), checks and normalises
every sequence, assigns it to train/valid/test, and writes binary token shards plus a JSON sidecar
per shard and a report of every refused record.  Input is streamed: memory depends on the shard
size (``--shard_tokens``), not on the input size; the longest record is held whole (never truncated).

Token ids are the ESM-2 vocabulary (``<cls>``0 ``<pad>``1 ``<eos>``2 ``<unk>``3, residues
``LAGVSERTIDPKQNFYMHWC`` 4-23, ``XBUZO`` 24-28, ``.``29 ``-``30 ``<null_1>``31 ``<mask>``32);
a sequence is stored as ``<cls> residues <eos>``.

Shard format: 256 x int32 little-endian header (magic 20240520, version 1, token count, rest 0),
then the tokens as uint8.  Files are ``<out>/<name>_<split>_<k:06d>.bin`` (+ ``.json`` sidecar).

Rules (each counted and reported, per file and in total)
  * normalised: lower-case letters -> upper-case; one final '*' (stop codon) stripped.
  * refused:    empty sequence; internal '*'; any character outside the 25 accepted letters
                (20 canonical + X B U Z O), e.g. 'J', a digit or a space; sequence lines before
                the first FASTA header.  Binary / undecodable input aborts with an error naming
                the file (before anything is written when it is detectable up front).
  * dropped:    an exact duplicate of a sequence already kept in another split
                (``cross_split_duplicate``); with ``--dedup`` any exact duplicate (``duplicate``).

Splits: ``--valid_files``/``--test_files`` put whole files into valid/test; every other record is
assigned by a hash of its normalised sequence (``--valid_frac``/``--test_frac``, 0.01 each by
default, 0 for a split that has file globs), so identical sequences never land in two splits.
Within a shard the sequences are shuffled with a seeded RNG (``--seed``).

Usage
-----
  python data/prepare.py --sample                      # embedded sample -> data/shards/sample_*
  python data/prepare.py my.fasta.gz other.txt --name mydata --out data/shards
  python data/prepare.py data/sample --name s2 --valid_files '*elongatus*' \\
         --test_files '*Mycoplasma*' --dedup --shard_tokens 5000000

Importable API (used by tests/test_data.py): ``tokenize``, ``clean_sequence``, ``read_records``,
``write_shard``, ``read_shard``, ``build_shards``.  Only the standard library and numpy are used.
"""

import argparse
import codecs
import fnmatch
import gzip
import hashlib
import json
import math
import os
import re
import sys
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterable, Iterator, Sequence

import numpy as np

# ----------------------------------------------------------------------------------------------
# Vocabulary and shard format constants
# ----------------------------------------------------------------------------------------------

RESIDUES = "LAGVSERTIDPKQNFYMHWCXBUZO"  # ids 4..28, in ESM-2 order
VOCAB = ["<cls>", "<pad>", "<eos>", "<unk>", *RESIDUES, ".", "-", "<null_1>", "<mask>"]
CLS_ID, PAD_ID, EOS_ID, UNK_ID, MASK_ID = 0, 1, 2, 3, 32
FIRST_RESIDUE_ID, LAST_RESIDUE_ID = 4, 28
NONCANONICAL = "XBUZO"

MAGIC = 20240520
VERSION = 1
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
MAX_SHARD_TOKENS = 2**31 - 1  # header[2] is an int32

SPLITS = ("train", "valid", "test")
REFUSE_REASONS = ("empty", "internal_stop", "invalid_char", "before_header")
DROP_REASONS = ("cross_split_duplicate", "duplicate")

SAMPLE_DIR = Path(__file__).resolve().parent / "sample"
DEFAULT_OUT = Path(__file__).resolve().parent / "shards"
FASTA_SUFFIXES = (".fa", ".fasta", ".faa", ".fas", ".txt", ".seq")

_INVALID = 255
_STOP_BYTE = ord("*")


def _build_tables() -> tuple[np.ndarray, np.ndarray]:
    """Return (translate, is_lower): two 256-entry tables indexed by a byte value.

    translate[b] is the token id (uint8) of byte b for the 25 accepted letters in either case and
    255 for every other byte; is_lower[b] is True for a-z.
    """
    translate = np.full(256, _INVALID, dtype=np.uint8)
    for i, ch in enumerate(RESIDUES):
        translate[ord(ch)] = FIRST_RESIDUE_ID + i
        translate[ord(ch.lower())] = FIRST_RESIDUE_ID + i
    is_lower = np.zeros(256, dtype=bool)
    is_lower[ord("a"): ord("z") + 1] = True
    return translate, is_lower


TRANSLATE, IS_LOWER = _build_tables()


class InputError(ValueError):
    """An input file cannot be read as FASTA or one-sequence-per-line text (message names it)."""


# ----------------------------------------------------------------------------------------------
# Tokenisation and per-record checks
# ----------------------------------------------------------------------------------------------

def tokenize(seq: str) -> np.ndarray:
    """Map a residue string to ESM-2 token ids, without ``<cls>``/``<eos>``.

    Args:
        seq: residue letters; the 25 accepted letters in upper or lower case.
    Returns:
        np.ndarray of dtype uint8 and shape (len(seq),), values in 4..28.
    Raises:
        ValueError: naming the first character that is not an accepted letter and its 1-based
            position (this includes '*': strip a final stop with ``clean_sequence`` first).
    """
    try:
        raw = seq.encode("ascii")
    except UnicodeEncodeError as e:
        raise ValueError(f"character {seq[e.start]!r} at position {e.start + 1} "
                         "is not an accepted residue letter") from None
    ids = TRANSLATE[np.frombuffer(raw, dtype=np.uint8)]
    bad = np.flatnonzero(ids == _INVALID)
    if bad.size:
        pos = int(bad[0])
        raise ValueError(f"character {seq[pos]!r} at position {pos + 1} "
                         "is not an accepted residue letter")
    return ids


@dataclass
class Cleaned:
    """Outcome of ``clean_sequence`` for one record.

    tokens:     uint8 residue ids, shape (L,), when kept; None when refused.
    normalised: the normalised sequence (upper case, final '*' removed) when kept, else None.
    reason:     refusal key (one of REFUSE_REASONS) when refused, else None.
    detail:     human-readable explanation of the refusal ('' when kept).
    lowercase:  the raw sequence contained lower-case letters (normalised to upper case).
    final_stop: a single final '*' was stripped.
    """
    tokens: np.ndarray | None
    normalised: str | None
    reason: str | None
    detail: str
    lowercase: bool
    final_stop: bool


def clean_sequence(raw: str) -> Cleaned:
    """Normalise and check one raw sequence string (already joined over lines, no line endings).

    Normalisations: one final '*' is stripped; lower-case letters become upper case.
    Refusals (``reason``): 'empty' (nothing left), 'internal_stop' (a '*' that is not the last
    character), 'invalid_char' (a character outside the 25 accepted letters; ``detail`` names it).
    """
    final_stop = raw.endswith("*")
    if final_stop:
        raw = raw[:-1]
    if not raw:
        detail = "empty sequence" + (" (only a '*')" if final_stop else "")
        return Cleaned(None, None, "empty", detail, False, final_stop)
    try:
        data = raw.encode("ascii")
    except UnicodeEncodeError as e:
        return Cleaned(None, None, "invalid_char",
                       f"character {raw[e.start]!r} at position {e.start + 1}", False, final_stop)
    arr = np.frombuffer(data, dtype=np.uint8)
    ids = TRANSLATE[arr]
    bad = np.flatnonzero(ids == _INVALID)
    if bad.size:
        pos = int(bad[0])
        if arr[pos] == _STOP_BYTE:
            return Cleaned(None, None, "internal_stop",
                           f"internal '*' at position {pos + 1} of {len(raw)}", False, final_stop)
        return Cleaned(None, None, "invalid_char",
                       f"character {raw[pos]!r} at position {pos + 1}", False, final_stop)
    lowercase = bool(IS_LOWER[arr].any())
    normalised = raw.upper() if lowercase else raw
    return Cleaned(ids, normalised, None, "", lowercase, final_stop)


def with_cls_eos(tokens: np.ndarray) -> np.ndarray:
    """Return ``<cls> tokens <eos>`` as a new uint8 array of shape (len(tokens) + 2,)."""
    out = np.empty(len(tokens) + 2, dtype=np.uint8)
    out[0] = CLS_ID
    out[1:-1] = tokens
    out[-1] = EOS_ID
    return out


# ----------------------------------------------------------------------------------------------
# Reading FASTA / plain text
# ----------------------------------------------------------------------------------------------

def _open_binary(path: Path) -> IO[bytes]:
    """Open a file for binary reading, transparently un-gzipping it (detected by magic bytes)."""
    with open(path, "rb") as f:
        magic = f.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


_READ_ERRORS = (OSError, EOFError, zlib.error)  # gzip.BadGzipFile is an OSError


def sniff_format(path: str | os.PathLike) -> str:
    """Return 'fasta' if any line of the file starts with '>', else 'text' (one sequence a line).

    Streams the file (stops at the first header).  Raises InputError naming the file if it is
    missing, a corrupt gzip, contains NUL bytes or is not valid UTF-8 in the part scanned.
    """
    path = Path(path)
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, prev_last = 0, b"\n"
    try:
        with _open_binary(path) as f:
            while chunk := f.read(1 << 20):
                if b"\x00" in chunk:
                    raise InputError(f"{path}: binary input (NUL byte near byte {offset}); "
                                     "expected FASTA or one sequence per line")
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError:
                    raise InputError(f"{path}: undecodable (not UTF-8/ASCII text) near byte "
                                     f"{offset}; expected FASTA or one sequence per line") from None
                if (prev_last == b"\n" and chunk[:1] == b">") or b"\n>" in chunk:
                    return "fasta"
                prev_last, offset = chunk[-1:], offset + len(chunk)
    except InputError:
        raise
    except _READ_ERRORS as e:
        raise InputError(f"{path}: cannot read ({type(e).__name__}: {e})") from e
    return "text"


def _decode_line(path: Path, line_no: int, line: bytes) -> str:
    """Decode one raw line (UTF-8) and strip its '\\n' / '\\r\\n' ending; InputError on binary."""
    if b"\x00" in line:
        raise InputError(f"{path}: line {line_no}: binary input (NUL byte); "
                         "expected FASTA or one sequence per line")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path}: line {line_no}: undecodable bytes (not UTF-8/ASCII text); "
                         "expected FASTA or one sequence per line") from None
    return text.rstrip("\r\n")


def read_records(path: str | os.PathLike) -> Iterator[tuple[str | None, str, int]]:
    """Stream the records of a FASTA / FASTA.gz / plain-text file.

    Yields (record_id, raw_sequence, line_no):
      * FASTA: record_id is the header's first word ('' if the header is empty), raw_sequence the
        concatenation of its sequence lines (line endings removed, nothing else changed), line_no
        the header's 1-based line number.  Sequence lines before the first header are yielded as
        one pseudo-record with record_id None (the caller refuses it); blank lines there are ignored.
      * plain text (no line starts with '>'): one record per non-blank line, record_id
        'line <n>', line_no n.
    Raises:
        InputError (a ValueError) naming the file for missing / corrupt / binary / undecodable input.
    """
    path = Path(path)
    fmt = sniff_format(path)
    try:
        with _open_binary(path) as f:
            if fmt == "text":
                for n, line in enumerate(f, 1):
                    text = _decode_line(path, n, line)
                    if text:
                        yield f"line {n}", text, n
                return
            rid: str | None = None
            start, chunks = 0, []
            orphan_start, orphan = 0, []
            for n, line in enumerate(f, 1):
                text = _decode_line(path, n, line)
                if text.startswith(">"):
                    if orphan:
                        yield None, "".join(orphan), orphan_start
                        orphan = []
                    if rid is not None:
                        yield rid, "".join(chunks), start
                    words = text[1:].split(maxsplit=1)
                    rid, start, chunks = (words[0] if words else ""), n, []
                elif rid is not None:
                    chunks.append(text)
                elif text:
                    if not orphan:
                        orphan_start = n
                    orphan.append(text)
            if orphan:
                yield None, "".join(orphan), orphan_start
            if rid is not None:
                yield rid, "".join(chunks), start
    except InputError:
        raise
    except _READ_ERRORS as e:
        raise InputError(f"{path}: cannot read ({type(e).__name__}: {e})") from e


# ----------------------------------------------------------------------------------------------
# Shards
# ----------------------------------------------------------------------------------------------

def write_shard(path: str | os.PathLike, sequences: Sequence[np.ndarray]) -> int:
    """Write token arrays (each already ``<cls> ... <eos>``, dtype uint8) to one shard file.

    The file is written to ``<path>.tmp`` and renamed, so a shard is never seen half-written.
    Returns the number of tokens written.  Raises ValueError for a non-uint8 array or more than
    2**31-1 tokens.
    """
    path = Path(path)
    for a in sequences:
        if not isinstance(a, np.ndarray) or a.dtype != np.uint8 or a.ndim != 1:
            raise ValueError(f"{path}: every sequence must be a 1-D uint8 array")
    tokens = np.concatenate(sequences) if len(sequences) else np.zeros(0, np.uint8)
    if tokens.size > MAX_SHARD_TOKENS:
        raise ValueError(f"{path}: {tokens.size} tokens exceed the int32 header limit")
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[0], header[1], header[2] = MAGIC, VERSION, tokens.size
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(header.tobytes())
        f.write(tokens.tobytes())
    os.replace(tmp, path)
    return int(tokens.size)


def read_shard(path: str | os.PathLike) -> np.ndarray:
    """Open a shard read-only and return its tokens as an np.memmap of uint8, shape (n_tokens,).

    Validates the header.  Raises ValueError naming the file and the problem: shorter than the
    1024-byte header, wrong magic, wrong version, negative token count, or a token count that does
    not match the file size (truncated file or trailing bytes).  An empty shard returns a
    zero-length uint8 ndarray (a memmap cannot have length 0).
    """
    path = Path(path)
    size = path.stat().st_size
    if size < HEADER_BYTES:
        raise ValueError(f"{path}: {size} bytes, shorter than the {HEADER_BYTES}-byte shard header")
    header = np.fromfile(path, dtype="<i4", count=HEADER_INTS)
    if header[0] != MAGIC:
        raise ValueError(f"{path}: wrong magic {int(header[0])} (expected {MAGIC}); not a token shard")
    if header[1] != VERSION:
        raise ValueError(f"{path}: unsupported version {int(header[1])} (expected {VERSION})")
    n_tokens = int(header[2])
    if n_tokens < 0:
        raise ValueError(f"{path}: negative token count {n_tokens} in header")
    expected = HEADER_BYTES + n_tokens
    if size != expected:
        what = "truncated: token count larger than the file holds" if size < expected \
            else "trailing bytes after the tokens"
        raise ValueError(f"{path}: header token count {n_tokens} needs {expected} bytes but the "
                         f"file has {size} ({what})")
    if n_tokens == 0:
        return np.zeros(0, dtype=np.uint8)
    return np.memmap(path, dtype=np.uint8, mode="r", offset=HEADER_BYTES, shape=(n_tokens,))


def unigram_entropy(counts: np.ndarray) -> float:
    """Shannon entropy in nats of a histogram (any shape, non-negative); 0.0 when empty."""
    c = np.asarray(counts, dtype=np.float64).ravel()
    total = c.sum()
    if total <= 0:
        return 0.0
    p = c[c > 0] / total
    return float(-(p * np.log(p)).sum())


def shard_stats(sequences: Sequence[np.ndarray]) -> dict:
    """Statistics of one shard's sequences (each ``<cls> ... <eos>`` uint8) for the JSON sidecar.

    Keys: sequences, residues, tokens, min/max/mean_length, length_histogram (sequence counts per
    length bin [2^k, 2^(k+1)), keyed by the lower bound 2^k), noncanonical (counts of X B U Z O),
    residue_counts (count of each of the 25 letters), residue_entropy_nats.
    """
    lengths = np.fromiter((len(a) - 2 for a in sequences), dtype=np.int64, count=len(sequences))
    counts = np.zeros(len(VOCAB), dtype=np.int64)
    for a in sequences:
        counts += np.bincount(a, minlength=len(VOCAB))[: len(VOCAB)]
    res_counts = counts[FIRST_RESIDUE_ID: LAST_RESIDUE_ID + 1]
    hist: dict[str, int] = {}
    if lengths.size:
        bins = np.frexp(lengths.astype(np.float64))[1] - 1  # floor(log2(L)) for L >= 1
        for k, n in zip(*np.unique(bins, return_counts=True)):
            hist[str(2 ** int(k))] = int(n)
    return {
        "sequences": int(lengths.size),
        "residues": int(lengths.sum()),
        "tokens": int(lengths.sum() + 2 * lengths.size),
        "min_length": int(lengths.min()) if lengths.size else 0,
        "max_length": int(lengths.max()) if lengths.size else 0,
        "mean_length": round(float(lengths.mean()), 2) if lengths.size else 0.0,
        "length_histogram": hist,
        "noncanonical": {ch: int(counts[VOCAB.index(ch)]) for ch in NONCANONICAL},
        "residue_counts": {ch: int(c) for ch, c in zip(RESIDUES, res_counts)},
        "residue_entropy_nats": round(unigram_entropy(res_counts), 6),
    }


class _SplitWriter:
    """Buffers one split's sequences up to ``shard_tokens`` tokens, then shuffles and writes a shard.

    Memory: about shard_tokens bytes plus ~100 bytes per buffered sequence.  A single sequence
    longer than shard_tokens gets a shard of its own (sequences are never cut).
    """

    def __init__(self, out_dir: Path, name: str, split: str, shard_tokens: int, seed: int):
        self.out_dir, self.name, self.split = out_dir, name, split
        self.shard_tokens, self.seed = shard_tokens, seed
        self.buffer: list[np.ndarray] = []
        self.buffered_tokens = 0
        self.shards: list[tuple[Path, dict]] = []

    def add(self, seq: np.ndarray) -> None:
        if self.buffer and self.buffered_tokens + len(seq) > self.shard_tokens:
            self.flush()
        self.buffer.append(seq)
        self.buffered_tokens += len(seq)

    def flush(self) -> None:
        if not self.buffer:
            return
        k = len(self.shards)
        rng = np.random.default_rng([self.seed, SPLITS.index(self.split), k])
        seqs = [self.buffer[i] for i in rng.permutation(len(self.buffer))]
        path = self.out_dir / f"{self.name}_{self.split}_{k:06d}.bin"
        n_tokens = write_shard(path, seqs)
        stats = {"file": path.name, "split": self.split, "shard": k, **shard_stats(seqs),
                 "format": {"header_int32": HEADER_INTS, "magic": MAGIC, "version": VERSION,
                            "token_dtype": "uint8", "vocab": VOCAB}}
        assert stats["tokens"] == n_tokens
        path.with_suffix(".json").write_text(json.dumps(stats, indent=1) + "\n")
        self.shards.append((path, stats))
        self.buffer, self.buffered_tokens = [], 0


# ----------------------------------------------------------------------------------------------
# Conversion driver
# ----------------------------------------------------------------------------------------------

@dataclass
class FileSummary:
    """Per-file counters: kept per split, refused/dropped per reason, normalisations."""
    path: str
    forced_split: str | None
    kept: Counter = field(default_factory=Counter)       # split -> records
    residues: Counter = field(default_factory=Counter)   # split -> residues
    refused: Counter = field(default_factory=Counter)    # reason -> records
    dropped: Counter = field(default_factory=Counter)    # reason -> records
    bad_chars: Counter = field(default_factory=Counter)  # offending character -> records
    lowercase: int = 0
    final_stop: int = 0


@dataclass
class BuildResult:
    """What ``build_shards`` produced: per-file summaries and the shards written per split."""
    files: list[FileSummary]
    shards: dict[str, list[tuple[Path, dict]]]
    report_path: Path


def hash_split(normalised: bytes, valid_frac: float, test_frac: float) -> str:
    """Deterministic split of a normalised sequence: u = first 8 bytes of blake2b-128 as a
    little-endian uint64 / 2**64; valid if u < valid_frac, test if u < valid_frac + test_frac."""
    u = int.from_bytes(_digest(normalised)[:8], "little") / 2.0**64
    if u < valid_frac:
        return "valid"
    if u < valid_frac + test_frac:
        return "test"
    return "train"


def _digest(normalised: bytes) -> bytes:
    return hashlib.blake2b(normalised, digest_size=16).digest()


class _Reporter:
    """Writes refusal lines to the report file and (up to a limit) to stderr."""

    def __init__(self, report: IO[str], stderr_limit: int, stream: IO[str]):
        self.report, self.stderr_limit, self.stream = report, stderr_limit, stream
        self.printed = 0
        self.suppressed = 0

    def line(self, text: str, to_stderr: bool = True) -> None:
        self.report.write(text + "\n")
        if not to_stderr:
            return
        if self.printed < self.stderr_limit:
            print(text, file=self.stream)
            self.printed += 1
        else:
            self.suppressed += 1


def build_shards(inputs: Sequence[tuple[str | os.PathLike, str | None]], out_dir: str | os.PathLike,
                 name: str, valid_frac: float = 0.01, test_frac: float = 0.01,
                 shard_tokens: int = 100_000_000, dedup: bool = False, seed: int = 0,
                 stderr_limit: int = 200, log: IO[str] | None = None) -> BuildResult:
    """Convert input files to shards ``<out_dir>/<name>_<split>_<k:06d>.bin`` (+ ``.json``).

    Args:
        inputs: (path, split) pairs; split 'valid'/'test'/'train' puts the whole file there, None
            assigns each record by ``hash_split`` with valid_frac / test_frac.
        out_dir, name: output location and dataset name; existing ``<name>_<split>_NNNNNN`` shards
            there are removed first; the report goes to ``<out_dir>/<name>_report.txt``.
        shard_tokens: maximum tokens per shard (a longer single sequence gets its own shard).
        dedup: drop exact duplicates of an already kept sequence (first occurrence wins).
        seed: seed of the within-shard shuffle.
        stderr_limit: refusal lines printed to stderr (all of them always go to the report).
        log: stream for progress and the summary (default stdout).
    Processing order is: test files, valid files, then the rest (each in the given order), so an
    identical sequence in two file-forced splits is kept in the first and dropped from the other.
    Raises:
        InputError naming a file that is missing, binary, undecodable or a corrupt gzip (all files
        are sniffed before anything is written; a problem found later aborts the conversion).
        ValueError for bad arguments.
    """
    log = log or sys.stdout
    if not (0 <= valid_frac and 0 <= test_frac and valid_frac + test_frac < 1):
        raise ValueError(f"need 0 <= valid_frac, test_frac and valid_frac + test_frac < 1 "
                         f"(got {valid_frac}, {test_frac})")
    if shard_tokens < 3:
        raise ValueError(f"shard_tokens must be >= 3 (got {shard_tokens})")
    items = [(Path(p), s) for p, s in inputs]
    for p, s in items:
        if s not in (None, *SPLITS):
            raise ValueError(f"{p}: unknown split {s!r}")
        if not p.is_file():
            raise InputError(f"{p}: no such file")
    formats = {p: sniff_format(p) for p, _ in items}  # fail on binary input before writing
    order = {"test": 0, "valid": 1}
    items.sort(key=lambda ps: order.get(ps[1], 2))  # stable: keeps the given order within groups

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stale = re.compile(rf"^{re.escape(name)}_(train|valid|test)_\d{{6}}\.(bin|json)$")
    for old in sorted(out_dir.iterdir()):
        if stale.match(old.name):
            old.unlink()
    writers = {s: _SplitWriter(out_dir, name, s, shard_tokens, seed) for s in SPLITS}
    heldout: dict[bytes, str] = {}  # digest -> split, for sequences of file-forced valid/test
    seen: set[bytes] = set()        # digests of all kept sequences (only with dedup)
    summaries: list[FileSummary] = []
    report_path = out_dir / f"{name}_report.txt"
    t0 = time.time()
    with open(report_path, "w") as report:
        rep = _Reporter(report, stderr_limit, sys.stderr)
        report.write(f"# prepare.py report for '{name}': refused and dropped records\n")
        for path, forced in items:
            fs = FileSummary(str(path), forced)
            summaries.append(fs)
            for rid, raw, line_no in read_records(path):
                label = rid if rid is not None else f"line {line_no}"
                where = f"{path}: {label}" + ("" if label == f"line {line_no}" else f" (line {line_no})")
                if rid is None:
                    fs.refused["before_header"] += 1
                    rep.line(f"{where}: refused [before_header]: sequence line(s) before the "
                             "first '>' header")
                    continue
                c = clean_sequence(raw)
                if c.reason is not None:
                    fs.refused[c.reason] += 1
                    if c.reason == "invalid_char":
                        fs.bad_chars[c.detail.split(" at ")[0].removeprefix("character ")] += 1
                    rep.line(f"{where}: refused [{c.reason}]: {c.detail}")
                    continue
                fs.lowercase += c.lowercase
                fs.final_stop += c.final_stop
                norm = c.normalised.encode("ascii")
                digest = _digest(norm)
                split = forced or hash_split(norm, valid_frac, test_frac)
                other = heldout.get(digest)
                if other is not None and other != split:
                    fs.dropped["cross_split_duplicate"] += 1
                    rep.line(f"{where}: dropped [cross_split_duplicate]: identical to a sequence "
                             f"already in {other}", to_stderr=False)
                    continue
                if dedup:
                    if digest in seen:
                        fs.dropped["duplicate"] += 1
                        rep.line(f"{where}: dropped [duplicate]: exact duplicate", to_stderr=False)
                        continue
                    seen.add(digest)
                if forced in ("valid", "test"):
                    heldout.setdefault(digest, split)
                writers[split].add(with_cls_eos(c.tokens))
                fs.kept[split] += 1
                fs.residues[split] += len(c.tokens)
        for w in writers.values():
            w.flush()
        summary = format_summary(summaries, {s: w.shards for s, w in writers.items()}, formats)
        report.write("\n" + summary)
    if rep.suppressed:
        print(f"... {rep.suppressed} more refusal lines not shown; all are in {report_path}",
              file=sys.stderr)
    print(summary, file=log, end="")
    print(f"report: {report_path}   ({time.time() - t0:.1f} s)", file=log)
    return BuildResult(summaries, {s: w.shards for s, w in writers.items()}, report_path)


def format_summary(files: Sequence[FileSummary], shards: dict[str, list[tuple[Path, dict]]],
                   formats: dict[Path, str] | None = None) -> str:
    """Return the human-readable summary: one row per file, a total row, and the shard table."""
    def reasons(c: Counter, keys: Iterable[str]) -> str:
        return " ".join(f"{k}={c[k]}" for k in keys if c[k]) or "-"

    rows = []
    total = FileSummary("TOTAL", None)
    for fs in files:
        for attr in ("kept", "residues", "refused", "dropped", "bad_chars"):
            getattr(total, attr).update(getattr(fs, attr))
        total.lowercase += fs.lowercase
        total.final_stop += fs.final_stop
    for fs in [*files, total]:
        kept = " ".join(f"{s}={fs.kept[s]}" for s in SPLITS if fs.kept[s]) or "0"
        bad = ",".join(f"{ch}:{n}" for ch, n in fs.bad_chars.most_common(5))
        fmt = (formats or {}).get(Path(fs.path), "")
        rows.append((Path(fs.path).name if fs.path != "TOTAL" else "TOTAL", fmt,
                     fs.forced_split or ("hash" if fs.path != "TOTAL" else ""), kept,
                     str(sum(fs.residues.values())),
                     reasons(fs.refused, REFUSE_REASONS) + (f" ({bad})" if bad else ""),
                     reasons(fs.dropped, DROP_REASONS),
                     f"lower={fs.lowercase} stop={fs.final_stop}"))
    head = ("file", "format", "split", "kept", "residues", "refused", "dropped", "normalised")
    lines = ["== files ==", *_table([head, *rows])]
    srows = []
    for s in SPLITS:
        for path, st in shards[s]:
            srows.append((path.name, str(st["sequences"]), str(st["residues"]), str(st["tokens"]),
                          f"{path.stat().st_size / 1e6:.2f}", f"{st['residue_entropy_nats']:.4f}"))
    lines += ["", "== shards ==",
              *_table([("shard", "sequences", "residues", "tokens", "MB", "H_res(nats)"), *srows])]
    empty = [s for s in SPLITS if not shards[s]]
    if empty:
        lines.append(f"(no sequences, no shard written for: {', '.join(empty)})")
    return "\n".join(lines) + "\n"


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------

def expand_inputs(paths: Sequence[str]) -> list[Path]:
    """Files as given; directories expanded recursively (sorted) to FASTA/text files, .gz or not."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and
                          f.name.removesuffix(".gz").lower().endswith(FASTA_SUFFIXES))
        else:
            out.append(p)
    return out


def _matches(path: Path, patterns: Sequence[str]) -> bool:
    names = (str(path), path.name, str(path.resolve()))
    return any(fnmatch.fnmatch(n, pat) for pat in patterns for n in names)


def read_split_file(path: Path) -> list[tuple[Path, str]]:
    """Parse a split file: lines '<train|valid|test> <file>' (relative to the split file's folder);
    '#' starts a comment.  Raises ValueError naming the file and line for a malformed line."""
    items = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) != 2 or words[0] not in SPLITS:
            raise ValueError(f"{path}: line {n}: expected '<train|valid|test> <file>', got {line!r}")
        items.append((path.parent / words[1], words[0]))
    return items


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Convert FASTA / FASTA.gz / one-sequence-per-line text to ESM-2 uint8 token "
                    "shards (<out>/<name>_<split>_<k:06d>.bin + .json) with a refusal report.",
        epilog="example: python data/prepare.py --sample   |   python data/prepare.py in.fa.gz "
               "--name mine --valid_files '*ecoli*' --dedup",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("inputs", nargs="*", help="input files or directories (searched recursively)")
    ap.add_argument("--sample", action="store_true",
                    help=f"build the embedded sample from {SAMPLE_DIR}/SPLITS.txt (name 'sample', "
                         "files split as listed, --dedup on)")
    ap.add_argument("--name", help="dataset name used in the shard file names (default 'sample' "
                                   "with --sample; required otherwise)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    ap.add_argument("--valid_frac", type=float, default=None,
                    help="fraction of hash-split records sent to valid (default 0.01, or 0 when "
                         "--valid_files is given)")
    ap.add_argument("--test_frac", type=float, default=None,
                    help="fraction of hash-split records sent to test (default 0.01, or 0 when "
                         "--test_files is given)")
    ap.add_argument("--valid_files", nargs="+", default=[], metavar="GLOB",
                    help="whole files matching (path or basename) go to valid, never to train")
    ap.add_argument("--test_files", nargs="+", default=[], metavar="GLOB",
                    help="whole files matching (path or basename) go to test, never to train")
    ap.add_argument("--dedup", action="store_true", help="drop exact duplicate sequences")
    ap.add_argument("--shard_tokens", type=int, default=100_000_000, help="max tokens per shard")
    ap.add_argument("--seed", type=int, default=0, help="seed of the within-shard shuffle")
    ap.add_argument("--stderr_limit", type=int, default=200,
                    help="max refusal lines on stderr (the report file always has all)")
    args = ap.parse_args(argv)

    try:
        if args.sample:
            if args.inputs or args.valid_files or args.test_files:
                ap.error("--sample takes no inputs or --valid_files/--test_files")
            inputs = read_split_file(SAMPLE_DIR / "SPLITS.txt")
            name, valid_frac, test_frac, dedup = args.name or "sample", 0.0, 0.0, True
        else:
            if not args.inputs or not args.name:
                ap.error("give input files and --name (or use --sample)")
            files = expand_inputs(args.inputs)
            if not files:
                ap.error("no input files found")
            for pats, what in ((args.valid_files, "--valid_files"), (args.test_files, "--test_files")):
                for pat in pats:
                    if not any(_matches(f, [pat]) for f in files):
                        ap.error(f"{what} pattern {pat!r} matches no input file")
            inputs = []
            for f in files:
                v, t = _matches(f, args.valid_files), _matches(f, args.test_files)
                if v and t:
                    ap.error(f"{f} matches both --valid_files and --test_files")
                inputs.append((f, "valid" if v else "test" if t else None))
            name, dedup = args.name, args.dedup
            valid_frac = args.valid_frac if args.valid_frac is not None else \
                (0.0 if args.valid_files else 0.01)
            test_frac = args.test_frac if args.test_frac is not None else \
                (0.0 if args.test_files else 0.01)
        build_shards(inputs, args.out, name, valid_frac=valid_frac, test_frac=test_frac,
                     shard_tokens=args.shard_tokens, dedup=dedup, seed=args.seed,
                     stderr_limit=args.stderr_limit)
    except ValueError as e:  # includes InputError
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
