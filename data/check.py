#!/usr/bin/env python3
"""Validate a folder (or glob) of ESM-2 token shards and print a summary.

Checks, for every ``*.bin`` file (vectorised with numpy, streaming in blocks; memory does not
depend on the shard size):
  * header: at least 1024 bytes; int32 little-endian magic 20240520, version 1, a token count
    >= 0; the file size is exactly 1024 + token count (a count larger than the file = truncated);
  * tokens: every id < 33 (the ESM-2 vocabulary); the stream is a sequence of whole records
    ``<cls>``(0) residues ``<eos>``(2): the first token is 0, the last is 2, and 0 / 2 alternate
    (no 0 inside a record, no residue between an ``<eos>`` and the next ``<cls>``, no empty record);
  * the JSON sidecar ``<stem>.json`` when present: its sequences / tokens agree with the shard.

Every error names the file and the byte offset in the file (header fields: 0, 4, 8; tokens: 1024
+ index).  At most ``--max_errors`` errors are listed per file.  The summary prints files,
sequences, tokens (and residues), errors, and with ``--stats`` each shard's sidecar statistics
(length histogram, non-canonical letters).

Exit status: 0 when every file is valid, 1 on any error (or no file found), 2 on bad usage.

Usage:
  python data/check.py data/omg_prot50                    # every *.bin in the folder
  python data/check.py 'data/shards/sample_*.bin' --stats
"""

import argparse
import glob
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from prepare import CLS_ID, EOS_ID, HEADER_BYTES, HEADER_INTS, MAGIC, VERSION, VOCAB, format_stats  # noqa: E402

BLOCK = 1 << 24  # tokens read at a time


def expand(patterns: list[str]) -> list[Path]:
    """Folders -> their ``*.bin`` files (sorted); globs expanded; plain files kept."""
    out: list[Path] = []
    for pat in patterns:
        p = Path(pat)
        if p.is_dir():
            out += sorted(p.glob("*.bin"))
        elif any(ch in pat for ch in "*?["):
            out += sorted(Path(x) for x in glob.glob(pat))
        else:
            out.append(p)
    return out


def check_shard(path: str | Path, max_errors: int = 20) -> tuple[dict, list[str]]:
    """Validate one shard file.

    Returns (info, errors): info = {'tokens', 'sequences', 'residues'} (counts from the parts that
    could be read), errors = messages 'PATH: offset N: problem' (at most max_errors, then one
    '... more' line).  Never raises for a bad file (a missing/unreadable file is an error line).
    """
    path = Path(path)
    info = {"tokens": 0, "sequences": 0, "residues": 0}
    errors: list[str] = []

    def err(offset: int, msg: str) -> None:
        errors.append(f"{path}: offset {offset}: {msg}")

    try:
        size = path.stat().st_size
    except OSError as e:
        return info, [f"{path}: cannot read ({e})"]
    if size < HEADER_BYTES:
        return info, [f"{path}: offset 0: {size} bytes, shorter than the {HEADER_BYTES}-byte header"]
    header = np.fromfile(path, dtype="<i4", count=HEADER_INTS)
    if header[0] != MAGIC:
        err(0, f"wrong magic {int(header[0])} (expected {MAGIC}); not a token shard")
    if header[1] != VERSION:
        err(4, f"unsupported version {int(header[1])} (expected {VERSION})")
    n = int(header[2])
    if n < 0:
        err(8, f"negative token count {n}")
    elif HEADER_BYTES + n > size:
        err(8, f"token count {n} larger than the file holds ({size - HEADER_BYTES} token bytes; "
               "truncated file?)")
    elif HEADER_BYTES + n < size:
        err(HEADER_BYTES + n, f"{size - HEADER_BYTES - n} trailing bytes after the {n} tokens")
    if errors:  # a bad header: the token stream cannot be trusted
        return info, errors
    info["tokens"] = n
    if n == 0:
        return info, errors
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=HEADER_BYTES, shape=(n,))
    expect_cls = True  # the next special token must be <cls> (0), else <eos> (2)
    prev_special = -1  # index of the last 0/2 token seen
    n_bad = 0
    for start in range(0, n, BLOCK):
        block = np.asarray(data[start: start + BLOCK])
        big = np.flatnonzero(block >= len(VOCAB))
        for i in big[: max(0, max_errors - n_bad)].tolist():
            err(HEADER_BYTES + start + i, f"token id {int(block[i])} >= {len(VOCAB)}")
        n_bad += big.size
        sp = np.flatnonzero((block == CLS_ID) | (block == EOS_ID))
        kinds = block[sp]
        if start == 0 and (not sp.size or sp[0] != 0 or kinds[0] != CLS_ID):
            err(HEADER_BYTES, f"first token is {int(block[0])}, not <cls> (0)")
            n_bad += 1
        if sp.size:
            # expected kind alternates 0, 2, 0, 2 ... starting from the state carried over
            want = np.where((np.arange(sp.size) % 2 == 0) == expect_cls, CLS_ID, EOS_ID)
            wrong = np.flatnonzero(kinds != want)
            for j in wrong[: max(0, max_errors - n_bad)].tolist():
                what = "<cls> inside a record (missing <eos> before it)" if kinds[j] == CLS_ID \
                    else "<eos> without a <cls> before it"
                err(HEADER_BYTES + start + int(sp[j]), what)
            n_bad += wrong.size
            if not wrong.size:
                gsp = sp + start
                # residues between <eos> and the next <cls>
                prevs = np.concatenate([[prev_special], gsp[:-1]])
                gap_after_eos = (kinds == CLS_ID) & (gsp - prevs > 1) & (prevs >= 0)
                for j in np.flatnonzero(gap_after_eos)[: max(0, max_errors - n_bad)].tolist():
                    err(HEADER_BYTES + int(prevs[j]) + 1, "tokens between an <eos> and the next <cls>")
                n_bad += int(gap_after_eos.sum())
                empty = (kinds == EOS_ID) & (gsp - prevs == 1)
                for j in np.flatnonzero(empty)[: max(0, max_errors - n_bad)].tolist():
                    err(HEADER_BYTES + int(gsp[j]), "empty record (<cls> directly followed by <eos>)")
                n_bad += int(empty.sum())
                info["sequences"] += int((kinds == EOS_ID).sum())
            expect_cls = (sp.size % 2 == 0) == expect_cls
            prev_special = int(sp[-1] + start)
    if data[n - 1] != EOS_ID:
        err(HEADER_BYTES + n - 1, f"last token is {int(data[n - 1])}, not <eos> (2)")
        n_bad += 1
    info["residues"] = n - 2 * info["sequences"]
    if n_bad > max_errors:
        errors = errors[:max_errors] + [f"{path}: ... {n_bad - max_errors} more errors"]
    side = path.with_suffix(".json")
    if side.is_file() and not errors:
        try:
            st = json.loads(side.read_text())
            for key in ("tokens", "sequences"):
                if key in st and st[key] != info[key]:
                    errors.append(f"{side}: sidecar says {key}={st[key]} but the shard has {info[key]}")
        except (OSError, ValueError) as e:
            errors.append(f"{side}: unreadable sidecar ({e})")
    return info, errors


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description="Validate ESM-2 token shards (headers, sizes, <cls>...<eos> framing, ids < 33); "
                    "exit status 1 on any error.",
        epilog="example: python data/check.py data/omg_prot50 --stats")
    ap.add_argument("paths", nargs="+", metavar="DIR_OR_GLOB",
                    help="folders (their *.bin), globs (quote them) or shard files")
    ap.add_argument("--max_errors", type=int, default=20, help="errors listed per file")
    ap.add_argument("--stats", action="store_true",
                    help="print each shard's JSON sidecar statistics (length histogram, "
                         "non-canonical letters)")
    ap.add_argument("--quiet", action="store_true", help="only errors and the summary")
    args = ap.parse_args(argv)
    files = expand(args.paths)
    if not files:
        print(f"error: no shard files match {' '.join(args.paths)}", file=sys.stderr)
        return 1
    totals = {"tokens": 0, "sequences": 0, "residues": 0}
    n_err = bad_files = 0
    for f in files:
        info, errors = check_shard(f, args.max_errors)
        for e in errors:
            print(e, file=sys.stderr)
        n_err += len(errors)
        bad_files += bool(errors)
        for k in totals:
            totals[k] += info[k]
        if not args.quiet:
            print(f"{'BAD' if errors else 'ok ':3} {f}  sequences={info['sequences']} "
                  f"tokens={info['tokens']}")
        side = Path(f).with_suffix(".json")
        if args.stats and side.is_file() and not errors:
            print(format_stats(json.loads(side.read_text())))
    print(f"files={len(files)} bad_files={bad_files} sequences={totals['sequences']} "
          f"tokens={totals['tokens']} residues={totals['residues']} errors={n_err}")
    return 1 if n_err else 0


if __name__ == "__main__":
    sys.exit(main())
