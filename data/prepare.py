#!/usr/bin/env python3
"""Convert protein FASTA / plain-text / CSV-TSV sequence files into ESM-2 token shards, fast.

What it does
------------
Reads FASTA or FASTA.gz files (multi-line records, Windows line endings allowed), plain text with
one sequence per line (auto-detected: a file with no line starting with '>'), or a column of a
CSV/TSV table (``--column NAME``, optional ``--id_column NAME``; ``.csv``/``.tsv``/``.tab`` names,
gzip'd or not), checks and normalises every sequence, assigns it to train/valid/test, and writes
binary token shards plus a JSON sidecar per shard and a report of every refused record.

Speed and memory: input is streamed in chunks of ``--chunk_mb`` MB of uncompressed text cut at
record boundaries; each chunk is parsed with numpy and C-level bytes operations on the whole
buffer (newline / header positions by ``np.flatnonzero``, the record bodies joined in one
``bytes.join``, a 256-entry ``bytes.translate`` table for tokens and for bad bytes), and only the
few records holding a bad byte fall back to per-record Python.  Chunks are parsed by
``--workers`` processes (multiprocessing; the main process decompresses, assigns splits and writes
shards, in input order, so the output does not depend on the number of workers).  Memory: about
(2 * workers + 2) chunks, plus one shard buffer per split (~2 x ``--shard_tokens`` bytes while a
shard is written), plus 16 + ~70 bytes per sequence held for duplicate checks (see build_shards);
independent of the input file sizes.  The longest record is held whole (never truncated).

Token ids are the ESM-2 vocabulary (``<cls>``0 ``<pad>``1 ``<eos>``2 ``<unk>``3, residues
``LAGVSERTIDPKQNFYMHWC`` 4-23, ``XBUZO`` 24-28, ``.``29 ``-``30 ``<null_1>``31 ``<mask>``32);
a sequence is stored as ``<cls> residues <eos>``.

Shard format: 256 x int32 little-endian header (magic 20240520, version 1, token count, rest 0),
then the tokens as uint8.  Files are ``<out>/<name>_<split>_<k:06d>.bin`` (+ ``.json`` sidecar).

Rules (each counted and reported, per file and in total)
  * normalised: lower-case letters -> upper-case; one final '*' (stop codon) stripped.
  * refused:    empty sequence; internal '*'; any character outside the 25 accepted letters
                (20 canonical + X B U Z O), e.g. 'J', a digit, a space or a tab; sequence lines
                before the first FASTA header.  Binary (NUL byte) / undecodable (not UTF-8) /
                truncated-gzip input aborts with an error naming the file and line; the shards of
                the aborted run are removed.  A UTF-8 byte-order mark at the start of a file (Windows
                editors write one) is encoding, not text: it is skipped.
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
         --test_files '*Mycoplasma*' --dedup --shard_tokens 5000000 --workers 4
  python data/prepare.py seqs.tsv.gz --column sequence --id_column id --name tab

Importable API (used by tests/test_data.py): ``tokenize``, ``clean_sequence``, ``read_records``,
``write_shard``, ``read_shard``, ``build_shards``, ``parse_chunk``.  Only the standard library and
numpy are used.
"""

import argparse
import codecs
import collections
import csv
import fnmatch
import gzip
import hashlib
import io
import json
import multiprocessing
import operator
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
TABLE_SUFFIXES = (".csv", ".tsv", ".tab")

DEFAULT_CHUNK_BYTES = 4 << 20  # uncompressed bytes per parse task
_READ_BLOCK = 1 << 20          # compressed bytes read at a time
BOM = codecs.BOM_UTF8          # skipped at the start of a file (utf-8-sig), as train_plm.read_fasta does

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
# _FLAG[b]: 0 for an accepted upper-case letter, 1 for an accepted lower-case letter, 2 otherwise
_FLAG = np.where(TRANSLATE == _INVALID, 2, IS_LOWER.astype(np.uint8)).astype(np.uint8)
# bytes.translate table of the FASTA fast path: placeholder bytes 1 -> <cls>, 2 -> <eos>
# (accepted lower-case letters map to id | 0x80 there, so one max() over the tokens tells whether
# a chunk has lower-case letters or bad bytes at all; _UNLOWER maps id | 0x80 back to id)
_PH_CLS, _PH_EOS, _DROP = 1, 2, 254
_LOWER_BIT = 0x80
_FAST_TABLE = TRANSLATE.copy()
_FAST_TABLE[IS_LOWER & (TRANSLATE != _INVALID)] |= _LOWER_BIT
_FAST_TABLE[_PH_CLS], _FAST_TABLE[_PH_EOS] = CLS_ID, EOS_ID
_FAST_TABLE = _FAST_TABLE.tobytes()
_UNLOWER = np.arange(256, dtype=np.uint8)
_UNLOWER[_LOWER_BIT | FIRST_RESIDUE_ID: _LOWER_BIT | LAST_RESIDUE_ID + 1] &= ~np.uint8(_LOWER_BIT)
_UNLOWER = _UNLOWER.tobytes()


class InputError(ValueError):
    """An input file cannot be read as FASTA, text or table (message names the file, and the line
    where known)."""

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

    Streams the file (16 KiB, then 1 MiB at a time; stops at the first header, so a FASTA file
    costs one small read).  Raises InputError naming the file if it is missing, a corrupt gzip,
    contains NUL bytes or is not valid UTF-8 in the part scanned (the rest of the file is checked
    the same way while it is converted).
    """
    path = Path(path)
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, prev_last, line = 0, b"\n", 1
    size = 1 << 14  # a FASTA file is known by its first byte: inflate only 16 KiB at first
    try:
        with _open_binary(path) as f:
            while chunk := f.read(size):
                if offset == 0 and chunk.startswith(BOM):
                    chunk, offset = chunk[len(BOM):], len(BOM)
                size = 1 << 20
                pos = chunk.find(b"\x00")
                if pos >= 0:
                    line += chunk.count(b"\n", 0, pos)
                    raise InputError(f"{path}: line {line}: binary "
                                     f"input (NUL byte near byte {offset + pos}); expected FASTA "
                                     "or one sequence per line")
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as e:
                    line += chunk.count(b"\n", 0, e.start)
                    raise InputError(f"{path}: line {line}: "
                                     "undecodable (not UTF-8/ASCII text) near byte "
                                     f"{offset + e.start}; expected FASTA or one sequence per "
                                     "line") from None
                if (prev_last == b"\n" and chunk[:1] == b">") or b"\n>" in chunk:
                    return "fasta"
                prev_last, offset = chunk[-1:], offset + len(chunk)
                line += chunk.count(b"\n")
    except InputError:
        raise
    except _READ_ERRORS as e:
        raise InputError(f"{path}: cannot read ({type(e).__name__}: {e})") from e
    return "text"


def _decode_line(path: Path, line_no: int, line: bytes) -> str:
    """Decode one raw line (UTF-8; line 1 without a byte-order mark) and strip its '\\n' / '\\r\\n'
    ending; InputError on binary."""
    if line_no == 1 and line.startswith(BOM):
        line = line[len(BOM):]
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
# Fast path: streaming chunks and vectorised parsing
# ----------------------------------------------------------------------------------------------

def _raw_blocks(path: Path, progress: list | None = None) -> Iterator[bytes]:
    """_file_blocks without a UTF-8 byte-order mark at the start of the file."""
    head: bytes | None = b""  # the file's first bytes, until they show whether a mark starts it
    for block in _file_blocks(path, progress):
        if head is not None:
            head += block
            if len(head) < len(BOM) and BOM.startswith(head):
                continue
            block, head = head[len(BOM):] if head.startswith(BOM) else head, None
        if block:
            yield block
    if head:  # a file shorter than a mark
        yield head


def _file_blocks(path: Path, progress: list | None = None) -> Iterator[bytes]:
    """Yield the (decompressed) bytes of a file in blocks of at most 8 MB.

    gzip is detected by its magic bytes and inflated with zlib (multi-member files are fine; the
    CRC and length of every member are checked by zlib; output per call is bounded, so a highly
    compressed file cannot blow up memory).  ``progress[0]`` (if given) is advanced by the number
    of on-disk bytes consumed.  Raises InputError naming the file for an unreadable, corrupt or
    truncated input (the message says how many uncompressed bytes were read before).
    """
    limit = 8 * _READ_BLOCK
    out = 0
    try:
        with open(path, "rb") as f:
            head = f.read(2)
            f.seek(0)
            if head != b"\x1f\x8b":
                while block := f.read(4 * _READ_BLOCK):
                    if progress is not None:
                        progress[0] += len(block)
                    out += len(block)
                    yield block
                return
            d, started = zlib.decompressobj(wbits=31), False
            while data := f.read(_READ_BLOCK):
                if progress is not None:
                    progress[0] += len(data)
                while data:
                    started = True
                    while True:  # inflate `data`, at most `limit` bytes of output per call
                        block = d.decompress(data, limit)
                        data = d.unconsumed_tail
                        if block:
                            out += len(block)
                            yield block
                        if d.eof or (not data and len(block) < limit):
                            break
                    if d.eof:  # end of one gzip member: another may follow
                        data = d.unused_data
                        d, started = zlib.decompressobj(wbits=31), False
                        if not data.strip(b"\x00"):  # zero padding after the last member
                            data = b""
            if started and not d.eof:
                raise EOFError("compressed file ended before the end-of-stream marker was reached")
    except (OSError, EOFError, zlib.error) as e:
        raise InputError(f"{path}: cannot read ({type(e).__name__}: {e}) after {out} uncompressed "
                         "bytes: corrupt or truncated file") from e


def iter_chunks(path: str | os.PathLike, fmt: str, chunk_bytes: int = DEFAULT_CHUNK_BYTES,
                progress: list | None = None) -> Iterator[tuple[bytes, int]]:
    """Stream a FASTA ('fasta') or one-sequence-per-line ('text') file as (chunk, first_line).

    Each chunk holds whole lines (and, for FASTA, whole records: every chunk but the first starts
    with a '>' header line), about ``chunk_bytes`` uncompressed bytes or one record if longer;
    ``first_line`` is the 1-based line number of its first line.  Raises InputError (see _raw_blocks).
    """
    path = Path(path)
    carry = b""
    line = 1
    sep = b"\n>" if fmt == "fasta" else b"\n"
    for block in _raw_blocks(path, progress):
        buf = carry + block if carry else block
        if len(buf) < chunk_bytes:
            carry = buf
            continue
        cut = buf.rfind(sep)
        if cut < 0:
            carry = buf  # a record longer than a chunk: keep reading, it stays whole
            continue
        chunk, carry = buf[: cut + 1], buf[cut + 1:]
        yield chunk, line
        line += chunk.count(b"\n")
    if carry:
        yield carry, line


def _check_text(chunk: bytes, path: str, first_line: int) -> None:
    """Raise InputError naming the file and line for a NUL byte or bytes that are not UTF-8."""
    pos = chunk.find(b"\x00")
    if pos >= 0:
        line = first_line + chunk.count(b"\n", 0, pos)
        raise InputError(f"{path}: line {line}: binary input "
                         "(NUL byte); expected FASTA or one sequence per line")
    if not chunk.isascii():
        try:
            chunk.decode("utf-8")
        except UnicodeDecodeError as e:
            line = first_line + chunk.count(b"\n", 0, e.start)
            raise InputError(f"{path}: line {line}: "
                             "undecodable bytes (not UTF-8/ASCII text); expected FASTA or one "
                             "sequence per line") from None


@dataclass
class Chunk:
    """Result of ``parse_chunk``: the records of one chunk, checked and tokenised.

    n_records:  records in the chunk (FASTA records, non-blank text lines or table rows).
    line_nos:   int64 (n_records,), 1-based line number of each record (its header for FASTA).
    kept:       int64 (k,), indices (0..n_records-1) of the records that passed the checks.
    lengths:    int64 (k,), residues of each kept record.
    framed:     uint8 (sum(lengths) + 2k,), the kept records as ``<cls> ids <eos>``, in order.
    digests:    bytes of length 16k (blake2b-128 of each normalised sequence), or None.
    refused:    [(record index or -1 for lines before the first header, line_no, reason,
                detail, bad_char or '')], in record order.
    lowercase / final_stop: kept records that had lower-case letters / a final '*' stripped.
    ids:        record ids: a list of str (table), or None (computed from the header lines).
    text, hdr_start, hdr_end: FASTA fast path: the chunk's text and int64 offsets of each record's
                header line in it ('>' .. the '\\n', exclusive); the ids are cut from it only when
                a message needs one.  A pool worker returns ``text=None`` for a chunk the main
                process sent it (the main process puts its own copy back: no transfer), and for
                a file it read itself when no record can be dropped as a duplicate (then the ids
                of the refused records travel in ``refused_ids``).
    headers:    FASTA (other chunks): the header lines' bytes, each ending in '\\n';
                header_ends: int64 offsets of each header's end in ``headers``.
    """
    n_records: int
    line_nos: np.ndarray
    kept: np.ndarray
    lengths: np.ndarray
    framed: np.ndarray
    digests: bytes | None
    refused: list
    lowercase: int = 0
    final_stop: int = 0
    ids: list | None = None
    headers: bytes | None = None
    header_ends: np.ndarray | None = None
    input_bytes: int = 0
    text: bytes | None = None
    hdr_start: np.ndarray | None = None
    hdr_end: np.ndarray | None = None
    refused_ids: dict | None = None  # {record index: id} of the refused records, kept by a pool
                                     # worker that does not send ``text`` back

    def record_id(self, i: int) -> str:
        """The id of record i: header's first word ('' if none), the table id, or 'line N'."""
        if self.ids is not None:
            return self.ids[i]
        if self.refused_ids is not None and i in self.refused_ids:
            return self.refused_ids[i]
        if self.hdr_start is not None:
            text = self.text[int(self.hdr_start[i]): int(self.hdr_end[i])].decode("utf-8")
        elif self.headers is not None:
            start = int(self.header_ends[i - 1]) if i else 0
            text = self.headers[start: int(self.header_ends[i])].decode("utf-8")
        else:
            return f"line {int(self.line_nos[i])}"
        words = text.rstrip("\r\n")[1:].split(maxsplit=1)
        return words[0] if words else ""


def _empty_i64() -> np.ndarray:
    return np.zeros(0, dtype=np.int64)


def parse_chunk(chunk: bytes, fmt: str, path: str = "<input>", first_line: int = 1,
                need_digest: bool = True) -> Chunk:
    """Parse one chunk of a FASTA ('fasta') or one-sequence-per-line ('text') file, vectorised.

    Args:
        chunk: whole lines of the file (see iter_chunks); for FASTA, a chunk that is not the file's
            first must start with a '>' line.  A missing final newline is fine.
        fmt: 'fasta' or 'text'.
        path, first_line: used in error messages and for the records' line numbers.
        need_digest: compute the blake2b digests of the normalised sequences (splits / dedup).
    Returns:
        Chunk.  The per-record rules are exactly those of ``clean_sequence`` (records holding a
        byte outside the 25 letters, or empty ones, are re-checked by it for the message).
    Raises:
        InputError naming the file and line for NUL bytes or non-UTF-8 input.
    """
    n_in = len(chunk)
    ch = _parse_chunk(chunk, fmt, path, first_line, need_digest)
    ch.input_bytes = n_in
    return ch


def _parse_chunk(chunk: bytes, fmt: str, path: str, first_line: int, need_digest: bool) -> Chunk:
    if not chunk.endswith(b"\n"):
        chunk += b"\n"
    _check_text(chunk, path, first_line)
    buf = np.frombuffer(chunk, dtype=np.uint8)
    nl = np.flatnonzero(buf == 10)
    starts = np.empty_like(nl)
    starts[0] = 0
    starts[1:] = nl[:-1] + 1
    cr = None  # per line: it ends in '\r\n' (the '\r' is stripped); None: no '\r' in the chunk
    ends = nl  # line ends without '\r\n' / '\n'
    if b"\r" in chunk:
        cr = np.zeros(nl.size, dtype=bool)
        nonempty = nl > starts
        cr[nonempty] = buf[nl[nonempty] - 1] == 13
        ends = nl - cr
    refused: list = []
    headers = header_ends = None
    if fmt == "fasta":
        hdr = np.flatnonzero(buf[starts] == 62)
        h0 = int(hdr[0]) if hdr.size else nl.size
        if h0 > 0:  # lines before the first header (only in a file's first chunk)
            nb = np.flatnonzero(ends[:h0] > starts[:h0])
            if nb.size:
                refused.append((-1, first_line + int(nb[0]), "before_header",
                                "sequence line(s) before the first '>' header", ""))
        if not hdr.size:
            return Chunk(0, _empty_i64(), _empty_i64(), _empty_i64(), np.zeros(0, np.uint8),
                         b"" if need_digest else None, refused)
        line_nos = first_line + hdr.astype(np.int64)
        if b"\x01" not in chunk and b"\x02" not in chunk:
            return _fasta_fast(chunk, nl, starts, cr, hdr, line_nos, refused, need_digest)
        keep = buf != 10
        if cr is not None:
            keep[nl[cr] - 1] = False
        keep[: starts[h0]] = False
        hs, he = starts[hdr], nl[hdr] + 1
        delta = np.zeros(buf.size + 1, dtype=np.int8)
        delta[hs] = 1
        delta[he] -= 1
        in_header = np.cumsum(delta[:-1], dtype=np.int8).view(bool)
        headers = buf[in_header].tobytes()
        header_ends = np.cumsum(he - hs)
        keep &= ~in_header
        lengths = np.add.reduceat(keep.view(np.uint8), hs, dtype=np.int64)
    else:
        keep = buf != 10
        if cr is not None:
            keep[nl[cr] - 1] = False
        rec = np.flatnonzero(ends > starts)
        lengths = (ends - starts)[rec].astype(np.int64)
        line_nos = first_line + rec.astype(np.int64)
    seq = buf[keep]
    return _finish(seq, lengths, line_nos, refused, need_digest, headers=headers,
                   header_ends=header_ends)


def _fasta_fast(chunk: bytes, nl: np.ndarray, starts: np.ndarray, cr: np.ndarray | None,
                hdr: np.ndarray, line_nos: np.ndarray, refused: list, need_digest: bool) -> Chunk:
    """FASTA fast path (chunk has no bytes 0, 1, 2): C-level bytes operations do the work.

    The record bodies (the lines after each header) are joined with placeholder bytes 2, 1
    between them (-> ``<eos>``, ``<cls>``; a stripped '\\r' becomes '\\n' first), one
    ``bytes.translate`` deletes the newlines (``raw``: 1 residues 2 per record) and a second maps
    bytes to token ids (255 = bad byte, id | 0x80 = lower-case letter).  The record lengths follow
    from the line positions, the header lines stay in ``chunk`` (ids cut out only for messages).
    Only records with a bad byte or a final '*', or empty ones, get per-record work.
    """
    nh = hdr.size
    hs = starts[hdr]  # '>' of each header line
    he = nl[hdr]      # its '\n'
    body_end = np.empty(nh, dtype=np.int64)  # the body of record i: he[i] + 1 .. body_end[i]
    body_end[:-1] = hs[1:]
    body_end[-1] = len(chunk)
    next_hdr = np.empty(nh, dtype=np.int64)  # line index of the next header (or of the end)
    next_hdr[:-1] = hdr[1:]
    next_hdr[-1] = nl.size
    # residues (raw bytes) per record: body bytes - its '\n's - its stripped '\r's
    lengths = body_end - he - 1 - (next_hdr - hdr - 1)
    src = chunk
    if cr is not None and cr.any():
        ccr = np.zeros(nl.size + 1, dtype=np.int64)
        np.cumsum(cr, out=ccr[1:])
        lengths -= ccr[next_hdr] - ccr[hdr + 1]
        ba = bytearray(chunk)
        np.frombuffer(ba, dtype=np.uint8)[nl[cr] - 1] = 10  # '\r' of '\r\n' -> deleted as '\n'
        src = ba
    mv = memoryview(src)
    bodies = list(map(mv.__getitem__, map(slice, (he + 1).tolist(), body_end.tolist())))
    bodies[0] = b"\x01" + bodies[0]
    bodies[-1] = bytes(bodies[-1]) + b"\x02"
    raw = b"\x02\x01".join(bodies).translate(None, b"\n")
    del bodies, mv
    n = nh
    cost = lengths + 2
    cls = np.cumsum(cost) - cost  # offset of each record's <cls> in raw / framed
    rec_last = cls + lengths      # offset of each record's last raw byte (its <cls> if empty)
    ftok = raw.translate(_FAST_TABLE)
    framed = np.frombuffer(ftok, dtype=np.uint8)
    stop = np.zeros(n, dtype=bool)
    bad = lengths == 0
    if b"*" in raw:
        has = lengths > 0
        rb = np.frombuffer(raw, dtype=np.uint8)
        stop[has] = rb[rec_last[has]] == _STOP_BYTE
    lrec = None  # records with a lower-case letter
    norm = raw
    if framed.max(initial=0) >= _LOWER_BIT:  # a bad byte (255) or a lower-case letter
        badpos = np.flatnonzero(framed == _INVALID)
        if np.count_nonzero(framed >= _LOWER_BIT) > badpos.size:
            low = np.flatnonzero((framed >= _LOWER_BIT) & (framed != _INVALID))
            lrec = np.zeros(n, dtype=bool)
            lrec[np.searchsorted(cls, low, side="right") - 1] = True
            norm = raw.upper()
            framed = np.frombuffer(ftok.translate(_UNLOWER), dtype=np.uint8)
        if stop.any():  # a final '*' is not a bad byte
            badpos = np.setdiff1d(badpos, rec_last[stop], assume_unique=True)
        bad[np.searchsorted(cls, badpos, side="right") - 1] = True
    del ftok
    bad |= (lengths - stop) == 0
    for i in np.flatnonzero(bad).tolist():
        c = clean_sequence(raw[cls[i] + 1: cls[i] + 1 + lengths[i]].decode("utf-8"))
        ch = c.detail.split(" at ")[0].removeprefix("character ") if c.reason == "invalid_char" else ""
        refused.append((i, int(line_nos[i]), c.reason, c.detail, ch))
    ok = ~bad
    klen = (lengths - stop)[ok]
    kept = np.flatnonzero(ok)
    if bad.any() or stop.any():
        out = framed.copy()
        if stop.any():
            out[rec_last[stop & ok]] = _DROP
        for i in np.flatnonzero(bad).tolist():
            out[cls[i]: cls[i] + cost[i]] = _DROP
        framed = np.frombuffer(out.tobytes().translate(None, bytes([_DROP])), dtype=np.uint8)
    digests = None
    if need_digest:
        s0 = cls[ok] + 1
        digests = _digests(norm, s0.tolist(), (s0 + klen).tolist())
    lowercase = 0 if lrec is None else int((lrec & ok).sum())
    return Chunk(n, line_nos, kept, klen, framed, digests, refused, lowercase=lowercase,
                 final_stop=int((stop & ok).sum()), text=chunk, hdr_start=hs, hdr_end=he)


def _digests(data: bytes, starts: list, ends: list) -> bytes:
    """blake2b-128 digests of ``data[s:e]`` for each (s, e), back to back (16 bytes each).

    Copying a prepared blake2b(digest_size=16) object is cheaper than a new one per sequence."""
    new = hashlib.blake2b(digest_size=16).copy
    out: list[bytes] = []
    put = out.append
    for s, e in zip(starts, ends):
        h = new()
        h.update(data[s:e])
        put(h.digest())
    return b"".join(out)


def parse_table_rows(values: Sequence[str], ids: Sequence[str], line_nos: Sequence[int],
                     need_digest: bool = True) -> Chunk:
    """Check and tokenise the sequences of table rows (one str each; ids and line numbers given)."""
    enc = [v.encode("utf-8") for v in values]
    seq = np.frombuffer(b"".join(enc), dtype=np.uint8)
    lengths = np.fromiter(map(len, enc), dtype=np.int64, count=len(enc))
    return _finish(seq, lengths, np.asarray(line_nos, dtype=np.int64), [], need_digest,
                   ids=list(ids))


def _finish(seq: np.ndarray, lengths: np.ndarray, line_nos: np.ndarray, refused: list,
            need_digest: bool, ids=None, headers=None, header_ends=None) -> Chunk:
    """Shared second half of parse_chunk / parse_table_rows.

    seq: uint8, all records' raw residue bytes back to back (line endings removed);
    lengths: int64 (n,), raw bytes per record.
    """
    n = lengths.size
    rec_end = np.cumsum(lengths)
    rec_start = rec_end - lengths
    flag = _FLAG[seq]
    # a single final '*' is a normalisation, not a bad byte
    has = lengths > 0
    stop = np.zeros(n, dtype=bool)
    stop[has] = seq[rec_end[has] - 1] == _STOP_BYTE
    if stop.any():
        flag[rec_end[stop] - 1] = 0
    nz = np.flatnonzero(flag)
    bad = np.zeros(n, dtype=bool)
    lower = np.zeros(n, dtype=bool)
    if nz.size:
        rec_of = np.searchsorted(rec_end, nz, side="right")
        f = flag[nz]
        bad[rec_of[f == 2]] = True
        lower[rec_of[f == 1]] = True
    bad |= (lengths - stop) == 0  # empty, or only a '*'
    for i in np.flatnonzero(bad).tolist():  # slow path: the few bad records, for the message
        raw = seq[rec_start[i]: rec_end[i]].tobytes().decode("utf-8")
        c = clean_sequence(raw)
        ch = c.detail.split(" at ")[0].removeprefix("character ") if c.reason == "invalid_char" else ""
        refused.append((i, int(line_nos[i]), c.reason, c.detail, ch))
    ok = ~bad
    kept = np.flatnonzero(ok)
    klen = (lengths - stop)[kept]
    # drop refused records and final '*' bytes
    if bad.any() or stop.any():
        drop = np.repeat(bad, lengths)
        if stop.any():
            drop[rec_end[stop & ok] - 1] = True
        seq = seq[~drop]
    k = kept.size
    digests = None
    if need_digest:
        norm = seq
        if lower[ok].any():
            norm = seq.copy()
            norm[IS_LOWER[norm]] -= 32
        ends = np.cumsum(klen)
        digests = _digests(norm.tobytes(), (ends - klen).tolist(), ends.tolist())
    # frame: <cls> ids <eos>
    total = int(klen.sum()) + 2 * k
    framed = np.empty(total, dtype=np.uint8)
    cls_pos = np.cumsum(klen + 2) - (klen + 2)
    eos_pos = cls_pos + klen + 1
    is_res = np.ones(total, dtype=bool)
    is_res[cls_pos] = False
    is_res[eos_pos] = False
    framed[is_res] = TRANSLATE[seq]
    framed[cls_pos] = CLS_ID
    framed[eos_pos] = EOS_ID
    return Chunk(n, line_nos, kept, klen, framed, digests, refused,
                 lowercase=int(lower[ok].sum()), final_stop=int(stop[ok].sum()), ids=ids,
                 headers=headers, header_ends=header_ends)


def iter_table_rows(path: str | os.PathLike, column: str, id_column: str | None,
                    rows_per_chunk: int = 20000, progress: list | None = None
                    ) -> Iterator[tuple[list, list, list]]:
    """Stream a CSV (',') or TSV ('\\t' for .tsv/.tab) file, gzip'd or not, as batches of
    (values, ids, line_nos) from column ``column`` (id from ``id_column``, else 'line N').

    The first row is the header.  Raises InputError naming the file (and line) for a missing
    column, NUL bytes, undecodable text or a corrupt gzip.
    """
    path = Path(path)
    name = path.name.lower().removesuffix(".gz")
    delim = "," if name.endswith(".csv") else "\t"
    raw = _RawReader(_raw_blocks(path, progress))
    text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
    reader = csv.reader(text, delimiter=delim)
    try:
        try:
            head = next(reader)
        except StopIteration:
            return
        if column not in head:
            raise InputError(f"{path}: no column {column!r} (columns: {', '.join(head)})")
        if id_column is not None and id_column not in head:
            raise InputError(f"{path}: no id column {id_column!r} (columns: {', '.join(head)})")
        ci = head.index(column)
        ii = head.index(id_column) if id_column is not None else None
        values, ids, lines = [], [], []
        line = reader.line_num + 1
        for row in reader:
            if not row:
                line = reader.line_num + 1
                continue
            values.append(row[ci] if ci < len(row) else "")
            ids.append((row[ii] if ii < len(row) else "") if ii is not None else f"line {line}")
            lines.append(line)
            line = reader.line_num + 1
            if len(values) >= rows_per_chunk:
                yield values, ids, lines
                values, ids, lines = [], [], []
        if values:
            yield values, ids, lines
    except UnicodeDecodeError:
        raise InputError(f"{path}: line {reader.line_num + 1}: undecodable bytes (not UTF-8 text)") from None
    except csv.Error as e:
        raise InputError(f"{path}: line {reader.line_num}: {e} (binary input?)") from None


class _RawReader(io.RawIOBase):
    """A read-only raw stream over an iterator of byte blocks (for io.TextIOWrapper)."""

    def __init__(self, blocks: Iterator[bytes]):
        self.blocks, self.buf = blocks, b""

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not self.buf:
            try:
                self.buf = next(self.blocks)
            except StopIteration:
                return 0
        n = min(len(b), len(self.buf))
        b[:n] = self.buf[:n]
        self.buf = self.buf[n:]
        return n

# ----------------------------------------------------------------------------------------------
# Shards
# ----------------------------------------------------------------------------------------------

def _write_shard_bytes(path: Path, parts: Iterable, n_tokens: int) -> None:
    """Write header + the bytes-like ``parts`` in order (n_tokens uint8 in all) via
    ``<path>.tmp`` + rename.  Raises ValueError if the parts do not hold n_tokens bytes."""
    if n_tokens > MAX_SHARD_TOKENS:
        raise ValueError(f"{path}: {n_tokens} tokens exceed the int32 header limit")
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[0], header[1], header[2] = MAGIC, VERSION, n_tokens
    tmp = path.with_name(path.name + ".tmp")
    written = 0
    with open(tmp, "wb") as f:
        f.write(header.tobytes())
        for part in parts:
            written += f.write(part)
    if written != n_tokens:
        tmp.unlink()
        raise ValueError(f"{path}: wrote {written} tokens, expected {n_tokens}")
    os.replace(tmp, path)


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
    _write_shard_bytes(path, [tokens.tobytes()], int(tokens.size))
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
    tokens = np.concatenate(sequences) if len(sequences) else np.zeros(0, np.uint8)
    return stats_of(tokens, lengths)


def stats_of(tokens: np.ndarray | None, lengths: np.ndarray, counts: np.ndarray | None = None
             ) -> dict:
    """``shard_stats`` from a shard's token stream (uint8, any order) and its residue lengths
    (int64, one per sequence).  Vectorised: one bincount over the tokens (or ``counts``, the
    tokens' byte histogram from ``byte_counts``, given instead of the tokens)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    counts = (byte_counts(tokens) if counts is None else counts)[: len(VOCAB)]
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


def byte_counts(a: np.ndarray) -> np.ndarray:
    """Histogram of a uint8 array: int64 (256,).  Counts byte pairs as uint16 in 512 KB blocks
    (~8x faster here than np.bincount on uint8, which widens every byte to int64 first)."""
    a = np.ascontiguousarray(a, dtype=np.uint8).ravel()
    half = a.size // 2
    v = a[: 2 * half].view("<u2")
    pairs = np.zeros(65536, dtype=np.int64)
    for i in range(0, v.size, 1 << 18):  # blocks: the int64 temporary stays in cache
        pairs += np.bincount(v[i: i + (1 << 18)], minlength=65536)
    pairs = pairs.reshape(256, 256)
    counts = pairs.sum(axis=0) + pairs.sum(axis=1)  # low byte + high byte
    if a.size % 2:
        counts[a[-1]] += 1
    return counts.astype(np.int64)


def format_stats(st: dict) -> str:
    """One shard's sidecar statistics as two lines: lengths / histogram, and non-canonical letters."""
    hist = " ".join(f"{k}:{v}" for k, v in sorted(st["length_histogram"].items(),
                                                   key=lambda kv: int(kv[0])))
    nonc = " ".join(f"{k}={v}" for k, v in st["noncanonical"].items())
    return (f"  length min/mean/max {st['min_length']}/{st['mean_length']}/{st['max_length']}  "
            f"histogram [2^k:n] {hist or '-'}\n  non-canonical {nonc}")


class _SplitWriter:
    """Buffers one split's sequences up to ``shard_tokens`` tokens, then shuffles and writes a shard.

    Sequences arrive in batches (framed uint8 tokens + residue lengths).  Memory: the buffered
    tokens plus one copy while a shard is written (~2 x shard_tokens bytes) and 8 bytes per
    buffered sequence.  A single sequence longer than shard_tokens gets a shard of its own
    (sequences are never cut).  Shard k holds the same sequences, in the same order, as the
    original one-sequence-at-a-time writer: ``default_rng([seed, split, k]).permutation(n)``.
    """

    def __init__(self, out_dir: Path, name: str, split: str, shard_tokens: int, seed: int):
        self.out_dir, self.name, self.split = out_dir, name, split
        self.shard_tokens, self.seed = shard_tokens, seed
        self.tokens: list[np.ndarray] = []
        self.lengths: list[np.ndarray] = []
        self.buffered_tokens = 0
        self.shards: list[tuple[Path, dict]] = []

    def add(self, seq: np.ndarray) -> None:
        """Add one framed sequence (``<cls> ... <eos>`` uint8)."""
        self.add_batch(seq, np.array([len(seq) - 2], dtype=np.int64))

    def add_batch(self, framed: np.ndarray, lengths: np.ndarray) -> None:
        """Add framed sequences back to back (uint8) with their residue lengths (int64)."""
        while lengths.size:
            cost = lengths + 2
            cum = self.buffered_tokens + np.cumsum(cost)
            k = int(np.searchsorted(cum, self.shard_tokens, side="right"))
            if k == lengths.size:
                self._append(framed, lengths, int(cum[-1]))
                return
            if k == 0 and self.buffered_tokens == 0:
                k = 1  # one sequence longer than a shard: alone in its shard
            if k:
                n_tok = int(cum[k - 1]) - self.buffered_tokens
                self._append(framed[:n_tok], lengths[:k], int(cum[k - 1]))
                framed, lengths = framed[n_tok:], lengths[k:]
            self.flush()

    def _append(self, framed: np.ndarray, lengths: np.ndarray, total: int) -> None:
        self.tokens.append(framed)
        self.lengths.append(lengths)
        self.buffered_tokens = total

    def flush(self) -> None:
        if not self.lengths:
            return
        k = len(self.shards)
        lengths = np.concatenate(self.lengths) if len(self.lengths) > 1 else self.lengths[0]
        rng = np.random.default_rng([self.seed, SPLITS.index(self.split), k])
        perm = rng.permutation(lengths.size).tolist()
        # <eos> (2) occurs only at record ends: split there (C speed), permute, join again.  Per
        # buffered batch and per block of the output, so that no shard-sized buffer is made.
        pieces: list[bytes] = []
        counts = np.zeros(256, dtype=np.int64)  # byte histogram of the shard, for the sidecar
        for t in self.tokens:
            p = t.tobytes().split(b"\x02")
            p.pop()  # the empty piece after the last <eos>
            pieces += p
        self.tokens = []
        if len(pieces) != lengths.size:
            raise AssertionError(f"{self.split}: {len(pieces)} sequences, expected {lengths.size}")
        n_tokens = int(lengths.sum()) + 2 * lengths.size

        def blocks() -> Iterator[bytes]:
            step = 1 << 15
            for i in range(0, len(perm), step):
                idx = perm[i: i + step]
                got = operator.itemgetter(*idx)(pieces) if len(idx) > 1 else (pieces[idx[0]],)
                block = b"\x02".join(got)
                counts[:] += byte_counts(np.frombuffer(block, dtype=np.uint8))
                counts[EOS_ID] += 1
                yield block
                yield b"\x02"

        path = self.out_dir / f"{self.name}_{self.split}_{k:06d}.bin"
        _write_shard_bytes(path, blocks(), n_tokens)
        del pieces
        stats = {"file": path.name, "split": self.split, "shard": k,
                 **stats_of(None, lengths, counts=counts),
                 "format": {"header_int32": HEADER_INTS, "magic": MAGIC, "version": VERSION,
                            "token_dtype": "uint8", "vocab": VOCAB}}
        assert stats["tokens"] == n_tokens
        path.with_suffix(".json").write_text(json.dumps(stats, indent=1) + "\n")
        self.shards.append((path, stats))
        self.tokens, self.lengths, self.buffered_tokens = [], [], 0


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
    input_bytes: int = 0   # uncompressed input bytes parsed
    seconds: float = 0.0   # wall time of the conversion


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


class _Progress:
    """A one-line progress bar on a stream: on-disk bytes read / total, text MB, MB/s, files."""

    def __init__(self, total_disk: int, n_files: int, enabled: bool, stream: IO[str]):
        self.total, self.n_files, self.enabled, self.stream = total_disk, n_files, enabled, stream
        self.tty = enabled and getattr(stream, "isatty", lambda: False)()
        self.t0 = self.last = time.time()
        self.disk = [0]  # advanced by the readers
        self.text = 0
        self.files = 0

    def update(self, force: bool = False) -> None:
        now = time.time()
        if not self.enabled or (not force and now - self.last < (0.5 if self.tty else 10.0)):
            return
        self.last = now
        frac = self.disk[0] / self.total if self.total else 1.0
        width = 30
        bar = "#" * int(width * frac) + "-" * (width - int(width * frac))
        rate = self.text / 1e6 / max(now - self.t0, 1e-9)
        msg = (f"[{bar}] {100 * frac:5.1f}%  {self.disk[0] / 1e6:.1f}/{self.total / 1e6:.1f} MB read, "
               f"{self.text / 1e6:.1f} MB text, {rate:.1f} MB/s, file {self.files}/{self.n_files}")
        print(("\r" + msg) if self.tty else msg, end="" if self.tty else "\n", file=self.stream,
              flush=True)

    def close(self) -> None:
        if self.enabled:
            self.update(force=True)
            if self.tty:
                print(file=self.stream)


def _ensure_importable() -> None:
    """Make ``sys.modules[__name__]`` this module, so that pool tasks and results pickle by name
    (needed when the file was loaded with importlib without registering it)."""
    mod = sys.modules.get(__name__)
    if mod is None or getattr(mod, "_work", None) is not _work:
        import types
        mod = types.ModuleType(__name__)
        mod.__dict__.update(globals())
        sys.modules[__name__] = mod


def _work(task: tuple, in_pool: bool = False, need_text: bool = True) -> Chunk | list[Chunk]:
    """Worker entry point: parse one chunk of FASTA/text, one batch of table rows, or a whole
    small file (read and decompressed in the worker; a list of chunks).  ``in_pool``: a chunk
    sent by the main process comes back without its text (the main process has it); so does a
    file's chunk unless ``need_text`` (ids of records dropped as duplicates), keeping the ids of
    its refused records."""
    if task[0] == "chunk":
        ch = parse_chunk(*task[1:])
        if in_pool:
            ch.text = None
        return ch
    if task[0] == "file":
        _, path, fmt, chunk_bytes, need_digest = task
        out = [parse_chunk(c, fmt, str(path), line, need_digest)
               for c, line in iter_chunks(path, fmt, chunk_bytes)]
        if in_pool and not need_text:
            for ch in out:
                if ch.text is not None:
                    ch.refused_ids = {r[0]: ch.record_id(r[0]) for r in ch.refused if r[0] >= 0}
                    ch.text = None
        return out
    return parse_table_rows(*task[1:])


def default_workers() -> int:
    """CPUs this process may use (os.sched_getaffinity where available), at most 16."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = os.cpu_count() or 1
    return max(1, min(n, 16))


def file_format(path: str | os.PathLike, column: str | None = None) -> str:
    """'table' for a .csv/.tsv/.tab(.gz) file when a column is given, else ``sniff_format``."""
    name = Path(path).name.lower().removesuffix(".gz")
    if name.endswith(TABLE_SUFFIXES):
        if column is None:
            raise InputError(f"{path}: a CSV/TSV table needs --column NAME (the sequence column)")
        return "table"
    return sniff_format(path)


def build_shards(inputs: Sequence[tuple[str | os.PathLike, str | None]], out_dir: str | os.PathLike,
                 name: str, valid_frac: float = 0.01, test_frac: float = 0.01,
                 shard_tokens: int = 100_000_000, dedup: bool = False, seed: int = 0,
                 stderr_limit: int = 200, log: IO[str] | None = None, workers: int = 1,
                 chunk_bytes: int = DEFAULT_CHUNK_BYTES, column: str | None = None,
                 id_column: str | None = None, progress: bool = False) -> BuildResult:
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
        log: stream for the summary (default stdout).
        workers: parser processes (1: everything in this process; >1: a multiprocessing pool,
            the output is byte-identical whatever the number).
        chunk_bytes: uncompressed bytes per parse task (records are never cut).
        column, id_column: sequence / id column of .csv/.tsv/.tab inputs.
        progress: show a progress bar on stderr.
    Processing order is: test files, valid files, then the rest (each in the given order), so an
    identical sequence in two file-forced splits is kept in the first and dropped from the other.
    Memory: bounded by the chunks in flight and the shard buffers, plus, for duplicate checks,
    a Python set / dict entry (~90 bytes) per held-out sequence (and per kept sequence with dedup).
    Raises:
        InputError naming a file (and line) that is missing, binary, undecodable, a corrupt or
        truncated gzip, or a table without the column.  Files are sniffed before anything is
        written; if a problem is found later, the shards written by this run are deleted.
        ValueError for bad arguments.
    """
    log = log or sys.stdout
    if not (0 <= valid_frac and 0 <= test_frac and valid_frac + test_frac < 1):
        raise ValueError(f"need 0 <= valid_frac, test_frac and valid_frac + test_frac < 1 "
                         f"(got {valid_frac}, {test_frac})")
    if shard_tokens < 3:
        raise ValueError(f"shard_tokens must be >= 3 (got {shard_tokens})")
    if workers < 1:
        raise ValueError(f"workers must be >= 1 (got {workers})")
    items = [(Path(p), s) for p, s in inputs]
    for p, s in items:
        if s not in (None, *SPLITS):
            raise ValueError(f"{p}: unknown split {s!r}")
        if not p.is_file():
            raise InputError(f"{p}: no such file")
    formats = {p: file_format(p, column) for p, _ in items}  # fail on binary input before writing
    order = {"test": 0, "valid": 1}
    items.sort(key=lambda ps: order.get(ps[1], 2))  # stable: keeps the given order within groups
    need_digest = bool(dedup or valid_frac > 0 or test_frac > 0
                       or any(s in ("valid", "test") for _, s in items))
    # record ids of kept records are needed only for duplicate messages
    need_text = bool(dedup or any(s in ("valid", "test") for _, s in items))

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stale = re.compile(rf"^{re.escape(name)}_(train|valid|test)_\d{{6}}\.(bin|json)$")
    for old in sorted(out_dir.iterdir()):
        if stale.match(old.name):
            old.unlink()
    writers = {s: _SplitWriter(out_dir, name, s, shard_tokens, seed) for s in SPLITS}
    state = _State(valid_frac, test_frac, dedup)
    summaries = [FileSummary(str(p), s) for p, s in items]
    report_path = out_dir / f"{name}_report.txt"
    prog = _Progress(sum(p.stat().st_size for p, _ in items), len(items), progress, sys.stderr)
    t0 = time.time()
    pool = None
    small_file = 2 * chunk_bytes  # on-disk bytes: a file up to this is one task (workers > 1)
    with open(report_path, "w") as report:
        rep = _Reporter(report, stderr_limit, sys.stderr)
        report.write(f"# prepare.py report for '{name}': refused and dropped records\n")

        def tasks() -> Iterator[tuple[int, int, tuple]]:
            for fi, (path, _) in enumerate(items):
                fmt = formats[path]
                prog.files = fi + 1
                size = path.stat().st_size
                if workers > 1 and fmt != "table" and size <= small_file:
                    # a small file is one task: the worker also decompresses it
                    prog.disk[0] += size
                    yield fi, -1, ("file", path, fmt, chunk_bytes, need_digest)
                elif fmt == "table":
                    for values, ids, lines in iter_table_rows(path, column, id_column,
                                                              progress=prog.disk):
                        yield fi, sum(map(len, values)), ("table", values, ids, lines, need_digest)
                else:
                    for chunk, line in iter_chunks(path, fmt, chunk_bytes, prog.disk):
                        yield fi, len(chunk), ("chunk", chunk, fmt, str(path), line, need_digest)

        def consume(fi: int, nbytes: int, ch: Chunk | list[Chunk]) -> None:
            path, forced = items[fi]
            for c in (ch if isinstance(ch, list) else [ch]):
                _consume(path, forced, summaries[fi], c, state, writers, rep)
                if nbytes < 0:
                    prog.text += c.input_bytes
            if nbytes >= 0:
                prog.text += nbytes
            prog.update()

        try:
            if workers == 1:
                for fi, nb, task in tasks():
                    consume(fi, nb, _work(task))
            else:
                _ensure_importable()
                methods = multiprocessing.get_all_start_methods()
                ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
                pool = ctx.Pool(workers)
                pending: collections.deque = collections.deque()

                def result(task: tuple, r) -> Chunk | list[Chunk]:
                    ch = r.get()
                    if task[0] == "chunk" and ch.hdr_start is not None:
                        ch.text = task[1]  # offsets into the chunk as sent
                    return ch

                for fi, nb, task in tasks():
                    pending.append((fi, nb, task,
                                    pool.apply_async(_work, (task, True, need_text))))
                    if len(pending) >= 2 * workers:
                        fi0, nb0, task0, r = pending.popleft()
                        consume(fi0, nb0, result(task0, r))
                while pending:
                    fi0, nb0, task0, r = pending.popleft()
                    consume(fi0, nb0, result(task0, r))
                pool.close()
                pool.join()
                pool = None
            for w in writers.values():
                w.flush()
        except BaseException as e:
            if pool is not None:
                pool.terminate()
            removed = _remove_outputs(writers)
            prog.close()
            report.write(f"\nABORTED: {e}\n(removed {removed} shard file(s) written by this run)\n")
            raise
        for fs, (path, _) in zip(summaries, items):
            if not sum(fs.kept.values()) and not sum(fs.refused.values()) \
                    and not sum(fs.dropped.values()):
                rep.line(f"{path}: warning: no records (empty file)")
        prog.close()
        summary = format_summary(summaries, {s: w.shards for s, w in writers.items()}, formats)
        report.write("\n" + summary)
    if rep.suppressed:
        print(f"... {rep.suppressed} more refusal lines not shown; all are in {report_path}",
              file=sys.stderr)
    seconds = time.time() - t0
    print(summary, file=log, end="")
    print(f"report: {report_path}   ({seconds:.1f} s)", file=log)
    return BuildResult(summaries, {s: w.shards for s, w in writers.items()}, report_path,
                       input_bytes=prog.text, seconds=seconds)


def _remove_outputs(writers: dict) -> int:
    n = 0
    for w in writers.values():
        for path, _ in w.shards:
            for p in (path, path.with_suffix(".json")):
                if p.exists():
                    p.unlink()
                    n += 1
        w.shards.clear()
        for p in w.out_dir.glob(f"{w.name}_{w.split}_*.bin.tmp"):
            p.unlink()
    return n


@dataclass
class _State:
    """Cross-chunk state of a conversion: split fractions and the duplicate-check tables."""
    valid_frac: float
    test_frac: float
    dedup: bool
    heldout: dict = field(default_factory=dict)  # digest -> split, sequences of file-forced valid/test
    seen: set = field(default_factory=set)       # digests of all kept sequences (only with dedup)


def _where(path: Path, label: str, line_no: int) -> str:
    return f"{path}: {label}" + ("" if label == f"line {line_no}" else f" (line {line_no})")


def _consume(path: Path, forced: str | None, fs: FileSummary, ch: Chunk, st: _State,
             writers: dict, rep: _Reporter) -> None:
    """Merge one parsed chunk: count refusals, assign splits, drop duplicates, feed the writers."""
    events = []  # (record index, text, to_stderr), written in record order
    for i, line_no, reason, detail, bad in ch.refused:
        fs.refused[reason] += 1
        if bad:
            fs.bad_chars[bad] += 1
        label = f"line {line_no}" if i < 0 else ch.record_id(i)
        events.append((i, f"{_where(path, label, line_no)}: refused [{reason}]: {detail}", True))
    fs.lowercase += ch.lowercase
    fs.final_stop += ch.final_stop
    k = ch.kept.size
    if forced is not None:
        codes = np.full(k, SPLITS.index(forced), dtype=np.int8)
    elif st.valid_frac > 0 or st.test_frac > 0:
        u = np.frombuffer(ch.digests, dtype="<u8").reshape(k, 2)[:, 0].astype(np.float64) / 2.0**64
        codes = np.where(u < st.valid_frac, 1, np.where(u < st.valid_frac + st.test_frac, 2, 0))
        codes = codes.astype(np.int8)
    else:
        codes = np.zeros(k, dtype=np.int8)
    keep = None
    if k and (st.dedup or st.heldout or forced in ("valid", "test")):
        keep = np.ones(k, dtype=bool)
        dg = ch.digests
        heldout, seen, dedup = st.heldout, st.seen, st.dedup
        add_heldout = forced in ("valid", "test")
        for j, c in enumerate(codes.tolist()):
            d = dg[16 * j: 16 * j + 16]
            split = SPLITS[c]
            if heldout:
                other = heldout.get(d)
                if other is not None and other != split:
                    keep[j] = False
                    fs.dropped["cross_split_duplicate"] += 1
                    i = int(ch.kept[j])
                    events.append((i, f"{_where(path, ch.record_id(i), int(ch.line_nos[i]))}: "
                                      f"dropped [cross_split_duplicate]: identical to a sequence "
                                      f"already in {other}", False))
                    continue
            if dedup:
                if d in seen:
                    keep[j] = False
                    fs.dropped["duplicate"] += 1
                    i = int(ch.kept[j])
                    events.append((i, f"{_where(path, ch.record_id(i), int(ch.line_nos[i]))}: "
                                      "dropped [duplicate]: exact duplicate", False))
                    continue
                seen.add(d)
            if add_heldout:
                heldout.setdefault(d, split)
        if keep.all():
            keep = None
    events.sort(key=lambda e: e[0])
    for _, text, to_stderr in events:
        rep.line(text, to_stderr=to_stderr)
    if not k:
        return
    if keep is not None:
        codes[~keep] = len(SPLITS)  # dropped
    # runs of consecutive records with the same code: each split's tokens are a few slices of
    # ch.framed (no per-token mask; one run, the usual case for a file-forced split, is a view)
    change = np.flatnonzero(codes[1:] != codes[:-1]) + 1
    run_start = np.concatenate(([0], change))
    run_end = np.concatenate((change, [k]))
    run_code = codes[run_start]
    tok = np.zeros(k + 1, dtype=np.int64)
    np.cumsum(ch.lengths + 2, out=tok[1:])
    for c in range(len(SPLITS)):
        runs = np.flatnonzero(run_code == c)
        if not runs.size:
            continue
        split = SPLITS[c]
        if runs.size == 1:
            a, b = int(run_start[runs[0]]), int(run_end[runs[0]])
            framed, lengths = ch.framed[int(tok[a]): int(tok[b])], ch.lengths[a:b]
        else:
            ta, tb = tok[run_start[runs]].tolist(), tok[run_end[runs]].tolist()
            framed = np.concatenate([ch.framed[a:b] for a, b in zip(ta, tb)])
            lengths = ch.lengths[codes == c]
        fs.kept[split] += int(lengths.size)
        fs.residues[split] += int(lengths.sum())
        writers[split].add_batch(framed, lengths)


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

def expand_inputs(paths: Sequence[str], tables: bool = False) -> list[Path]:
    """Files as given; directories expanded recursively (sorted) to FASTA/text files, .gz or not
    (and .csv/.tsv/.tab tables when ``tables``)."""
    suffixes = FASTA_SUFFIXES + (TABLE_SUFFIXES if tables else ())
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and
                          f.name.lower().removesuffix(".gz").endswith(suffixes))
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
        description="Convert FASTA / FASTA.gz / one-sequence-per-line text / a CSV-TSV column to "
                    "ESM-2 uint8 token shards (<out>/<name>_<split>_<k:06d>.bin + .json) with a "
                    "refusal report.  Streaming, vectorised (numpy), parallel over chunks.",
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
    ap.add_argument("--workers", type=int, default=0,
                    help="parser processes; 0 = one per available CPU (max 16); 1 = no pool. "
                         "The output does not depend on it")
    ap.add_argument("--chunk_mb", type=float, default=DEFAULT_CHUNK_BYTES / 2**20,
                    help="uncompressed MiB per parse task (records are never cut)")
    ap.add_argument("--column", help="CSV/TSV inputs (.csv, .tsv, .tab, optionally .gz): name of "
                                     "the sequence column (first row = column names)")
    ap.add_argument("--id_column", help="CSV/TSV inputs: column used as the record id in reports "
                                        "(default 'line N')")
    ap.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                    help="progress bar on stderr (default: when stderr is a terminal)")
    ap.add_argument("--stats", action="store_true",
                    help="after the summary, print every shard's sidecar statistics (length "
                         "histogram, non-canonical letters)")
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
            files = expand_inputs(args.inputs, tables=args.column is not None)
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
        if args.chunk_mb <= 0:
            ap.error("--chunk_mb must be > 0")
        progress = sys.stderr.isatty() if args.progress is None else args.progress
        res = build_shards(inputs, args.out, name, valid_frac=valid_frac, test_frac=test_frac,
                           shard_tokens=args.shard_tokens, dedup=dedup, seed=args.seed,
                           stderr_limit=args.stderr_limit,
                           workers=args.workers or default_workers(),
                           chunk_bytes=max(1, int(args.chunk_mb * 2**20)), column=args.column,
                           id_column=args.id_column, progress=progress)
    except ValueError as e:  # includes InputError
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted (shards written by this run were removed)", file=sys.stderr)
        return 130
    if not any(res.shards[s] for s in SPLITS):  # a script must not go on to train on nothing
        print(f"error: no sequence was kept from the {len(inputs)} input file(s), so no shard was written "
              "(the report above says why)", file=sys.stderr)
        return 1
    if args.stats:
        print("\n== shard statistics (JSON sidecars) ==")
        for s in SPLITS:
            for path, st in res.shards[s]:
                print(f"{path.name}: {st['sequences']} sequences, {st['residues']} residues")
                print(format_stats(st))
    return 0


if __name__ == "__main__":
    sys.exit(main())
