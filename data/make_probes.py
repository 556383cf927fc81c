#!/usr/bin/env python3
"""Build the probe datasets of the representation benchmark: data/probes/<task>.tsv.gz + REPORT.txt.

What it does
------------
Reads three labelled public sets from the raw copies in ``../shared/data/probes`` (``MANIFEST.tsv`` there
gives repository, commit, path and licence of every file), checks and normalises every record, removes
every probe sequence that is also in the training data of the models we probe, removes sequences shared
between the probe splits, and writes one compact gzip'd TSV per task plus a report:

  task                 source files                                   labels                split
  scl2205              pypi_p-scldata-2025.6.0/data__scl2205.csv      13 localisation       trn / evl / tst of
                       (+ data__splits.json, data__labels.json,       classes (class name)  data__splits.json
                       data__entries.json)
  esol                 jcchan23__GraphSol/Data__eSol_{train,test}.csv solubility, a float   the two files; valid =
                                                                      in [0, 1]             seeded 10 % of train
  secondary_structure  J-SNACKKB__FLIP/secondary_structure__          per residue H / E / C SET=train|test,
                       splits.zip (sequences.fasta, sampled.fasta,    ('-' = unresolved)    VALIDATION=True -> valid
                       mask.fasta)

Output format (``<out>/<task>.tsv.gz``, gzip with mtime 0, so a rebuild is byte-identical): UTF-8, a
header line ``id<TAB>split<TAB>label<TAB>sequence``, then one record per line, train first, then valid,
then test, each in source order.  ``split`` is train / valid / test; ``label`` is the class name
(scl2205, e.g. ``Cytoplasm;Nucleus``), a float written by Python ``repr`` (esol), or a string as long as
the sequence over ``H E C -`` (secondary_structure; ``-`` marks a residue FLIP's mask.fasta flags as
unresolved: mask 0, where FLIP's label is always 'C'; score and train on H/E/C positions only).
``sequence`` is upper case over the ESM-2 residue letters ``LAGVSERTIDPKQNFYMHWC`` + ``XBUZO``.
``id`` is the source id (UniProt entry, eSol gene name, PDB chain); an id repeated inside a task gets
``#2``, ``#3``... appended (counted as a normalisation), so ids are unique per file.

Rules (every one counted per task and split in REPORT.txt; nothing is dropped silently)
  * normalised: lower-case residues -> upper case; one final '*' stripped; a repeated id suffixed.
    (These are ``data/prepare.py``'s ``clean_sequence`` rules, imported from there.)
  * refused (listed with file, record id and reason in REPORT.txt and on stderr): ``empty``,
    ``internal_stop``, ``invalid_char`` (any character outside the 25 letters, e.g. a digit, 'J', a
    space), ``duplicate_id`` (a FASTA id repeated inside one FLIP file), ``length_mismatch`` (per-residue
    label not as long as the sequence), ``bad_label`` (an unknown class index, a value that is not a
    finite float, a structure letter outside H/E/C, a mask letter outside 0/1), ``bad_id`` (empty id or
    one holding a tab / newline), ``bad_split`` (a record in no split or in two), ``missing_label`` (a
    FLIP sequence without label or mask, or a label / mask without sequence).
  * removed, overlap with training data: a probe record (any split) whose first 1,022 residues equal the
    first 1,022 residues of a sequence in a ``--train_shards`` glob (default: the embedded sample's train
    split and the reference shards' train split).  1,022 = 1,024 tokens minus <cls>/<eos>; the reference
    shards hold sequences cropped to that.  Counted under the first glob that holds it; REPORT.txt also
    says how many records each glob holds.
  * removed, overlap between probe splits (same 1,022-residue key): test is kept whole; a valid
    record whose sequence is in test is removed; a train record whose sequence is in valid or test is
    removed.  Identical sequences inside one split are kept (as in the source) and counted in the report.

Seeded valid split (esol, or any task whose source has no valid split): the distinct sequences (keys) of
the kept train records, in file order, are permuted with ``numpy.random.default_rng(seed)`` (``--seed``,
default 0); the records whose key is among the first ``round(valid_frac * n_distinct)`` of the
permutation (``--valid_frac``, default 0.1) become valid.  This is done before any overlap removal, so it
depends only on the source file and the seed, never on the training shards, and identical sequences
never straddle train and valid.

Usage
-----
  python data/prepare.py --sample                           # the sample's train split, if missing
  python ../shared/bench/make_reference_shards.py ../shared/data/proteins data/reference reference 40000000
  python data/make_probes.py                                # -> data/probes/*.tsv.gz + REPORT.txt
  python data/make_probes.py --train_shards 'data/shards/mine_train_*.bin'   # you train on other data

Only the standard library and numpy are used.  Importable: ``read_task``, ``build``, ``read_probes``.
"""

import argparse
import csv
import glob
import gzip
import hashlib
import io
import json
import math
import os
import sys
import zipfile
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from prepare import CLS_ID, EOS_ID, FIRST_RESIDUE_ID, RESIDUES, clean_sequence, read_shard  # noqa: E402

DEFAULT_RAW = ROOT.parent / "shared" / "data" / "probes"
DEFAULT_OUT = HERE / "probes"
DEFAULT_TRAIN_SHARDS = ("data/shards/sample_train_*.bin", "data/reference/reference_train_*.bin")
BUILD_HINTS = {  # how to make a default glob match something
    DEFAULT_TRAIN_SHARDS[0]: "python data/prepare.py --sample",
    DEFAULT_TRAIN_SHARDS[1]: "python ../shared/bench/make_reference_shards.py ../shared/data/proteins "
                             "data/reference reference 40000000",
}
TASKS = ("scl2205", "esol", "secondary_structure")
SPLITS = ("train", "valid", "test")
MATCH_RESIDUES = 1022          # residues compared: 1,024 tokens minus <cls> and <eos>
SS_STATES = "HEC"
SS_UNRESOLVED = "-"
SIZE_LIMIT = 10 * 1000 * 1000  # bytes, all files of --out together
HEADER = ("id", "split", "label", "sequence")

SCL_DIR = "pypi_p-scldata-2025.6.0"
ESOL_DIR = "jcchan23__GraphSol"
SS_ZIP = "J-SNACKKB__FLIP/secondary_structure__splits.zip"
TASK_FILES = {
    "scl2205": [f"{SCL_DIR}/data__scl2205.csv", f"{SCL_DIR}/data__splits.json", f"{SCL_DIR}/data__labels.json",
                f"{SCL_DIR}/data__entries.json"],
    "esol": [f"{ESOL_DIR}/Data__eSol_train.csv", f"{ESOL_DIR}/Data__eSol_test.csv"],
    "secondary_structure": [SS_ZIP],
}
SPLIT_NOTES = {
    "scl2205": "train/valid/test = the 'trn'/'evl'/'tst' row-index lists of data__splits.json (indices = "
               "0-based data rows of data__scl2205.csv, checked against data__entries.json); the 'cv' "
               "folds there are not used; label = data__labels.json index_to_label[scl]",
    "esol": "train/test = the two files",
    "secondary_structure": "sampled.fasta headers: SET=test -> test, SET=train VALIDATION=True -> valid, "
                           "SET=train VALIDATION=False -> train; label '-' where mask.fasta is 0",
}


class ProbeError(ValueError):
    """A raw input cannot be read at all (missing file, wrong columns): the build stops."""


@dataclass
class Record:
    """One probe record.  seq is the normalised sequence once kept (None while refused); fate is
    'kept' or the reason it was refused / removed; key = seq[:MATCH_RESIDUES]."""
    file: str
    id: str
    split: str
    label: str
    raw: str
    per_residue: bool = False
    seq: str | None = None
    fate: str = "kept"
    detail: str = ""
    lower: bool = False
    stop: bool = False
    renamed: bool = False
    task: str = ""

    @property
    def key(self) -> str:
        return self.seq[:MATCH_RESIDUES]

    def refuse(self, reason: str, detail: str) -> None:
        self.fate, self.detail = f"refused:{reason}", detail


# ----------------------------------------------------------------------------------------------
# Readers: raw files -> list of Record (label checks that need no sequence happen here)
# ----------------------------------------------------------------------------------------------

def _path(raw: Path, rel: str) -> Path:
    p = raw / rel
    if not p.is_file():
        raise ProbeError(f"{p}: missing (raw probe files are in ../shared/data/probes; see its MANIFEST.tsv)")
    return p


def _csv_rows(path: Path, need: tuple[str, ...]) -> list[tuple[int, dict]]:
    """(line number, row dict) of a CSV with a header holding the columns `need`."""
    csv.field_size_limit(1 << 30)
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in need if c not in (reader.fieldnames or [])]
        if missing:
            raise ProbeError(f"{path}: no column(s) {missing} (header: {reader.fieldnames})")
        return [(reader.line_num, row) for row in reader]


def read_scl(raw: Path) -> list[Record]:
    """scl2205: the CSV rows, split by the row-index lists of splits.json, label by labels.json."""
    name = TASK_FILES["scl2205"][0]
    rows = _csv_rows(_path(raw, name), ("entry", "seq", "scl"))
    splits = json.loads(_path(raw, TASK_FILES["scl2205"][1]).read_text())
    labels = json.loads(_path(raw, TASK_FILES["scl2205"][2]).read_text())["index_to_label"]
    entries = json.loads(_path(raw, TASK_FILES["scl2205"][3]).read_text())
    for i, (_, row) in enumerate(rows):  # the split lists index rows: make sure rows are what they think
        if entries.get(str(i)) != row["entry"]:
            raise ProbeError(f"{raw / name}: data row {i} is {row['entry']!r} but data__entries.json says "
                             f"{entries.get(str(i))!r}; the split indices would be ambiguous")
    where = defaultdict(list)
    for split, key in (("train", "trn"), ("valid", "evl"), ("test", "tst")):
        for i in splits[key]:
            if not 0 <= int(i) < len(rows):
                raise ProbeError(f"{raw / TASK_FILES['scl2205'][1]}: '{key}' index {i} outside the "
                                 f"{len(rows)} rows")
            where[int(i)].append(split)
    out = []
    for i, (line, row) in enumerate(rows):
        rec = Record(name, (row["entry"] or "").strip(), "", "", row["seq"] or "")
        in_splits = where.get(i, [])
        rec.split = in_splits[0] if len(in_splits) == 1 else "none"
        if len(in_splits) != 1:
            rec.refuse("bad_split", f"row {i} is in {len(in_splits)} splits of data__splits.json {in_splits}")
        elif (row["scl"] or "").strip() not in labels:
            rec.refuse("bad_label", f"class index {row['scl']!r} not in data__labels.json (line {line})")
        else:
            rec.label = labels[row["scl"].strip()]
        out.append(rec)
    return out


def read_esol(raw: Path) -> list[Record]:
    """esol: gene, solubility, sequence rows of the train and test files."""
    out = []
    for rel, split in zip(TASK_FILES["esol"], ("train", "test")):
        for line, row in _csv_rows(_path(raw, rel), ("gene", "solubility", "sequence")):
            rec = Record(rel, (row["gene"] or "").strip(), split, "", row["sequence"] or "")
            try:
                value = float(row["solubility"])
            except (TypeError, ValueError):
                value = float("nan")
            if None in row:
                rec.refuse("bad_label", f"line {line}: {len(row[None])} field(s) more than the header")
            elif not math.isfinite(value):
                rec.refuse("bad_label", f"line {line}: solubility {row['solubility']!r} is not a finite number")
            else:
                rec.label = repr(value)
            out.append(rec)
    return out


def _fasta(text: str, member: str) -> tuple[dict[str, tuple[list[str], str]], list[str], list[tuple[str, str]]]:
    """FASTA text -> ({id: (header words after the id, joined sequence)}, ids in order, [(id, problem)])."""
    recs, order, problems, cur = {}, [], [], None
    for n, line in enumerate(text.splitlines(), 1):
        if line.startswith(">"):
            words = line[1:].split()
            cur = words[0] if words else ""
            if cur in recs:
                problems.append((cur, f"{member}: id repeated at line {n}"))
                cur = None
                continue
            recs[cur] = (words[1:], [])
            order.append(cur)
        elif cur is not None:
            recs[cur][1].append(line)
        elif line.strip():
            problems.append((f"line {n}", f"{member}: sequence line before the first header"))
    return {k: (w, "".join(s)) for k, (w, s) in recs.items()}, order, problems


def read_ss(raw: Path) -> list[Record]:
    """secondary_structure: FLIP splits.zip = sequences.fasta + sampled.fasta (labels, SET=, VALIDATION=)
    + mask.fasta (1 = resolved residue)."""
    rel = TASK_FILES["secondary_structure"][0]
    with zipfile.ZipFile(_path(raw, rel)) as z:
        def member(name):
            try:
                return z.read(f"splits/{name}").decode("utf-8")
            except KeyError:
                raise ProbeError(f"{raw / rel}: no member splits/{name}") from None
        seqs, order, problems = _fasta(member("sequences.fasta"), "sequences.fasta")
        labels, _, p2 = _fasta(member("sampled.fasta"), "sampled.fasta")
        masks, _, p3 = _fasta(member("mask.fasta"), "mask.fasta")
    out = [Record(f"{rel}:{d.split(':')[0]}", i, "none", "", "") for i, d in problems + p2 + p3]
    for r, (_, d) in zip(out, problems + p2 + p3):
        r.refuse("duplicate_id" if "repeated" in d else "bad_id", d)
    for sid in order:
        rec = Record(f"{rel}:sequences.fasta", sid, "none", "", seqs[sid][1], per_residue=True)
        out.append(rec)
        if sid not in labels or sid not in masks:
            rec.refuse("missing_label", f"no record {sid!r} in {'sampled' if sid not in labels else 'mask'}.fasta")
            continue
        words, lab = labels[sid]
        attrs = dict(w.split("=", 1) for w in words if "=" in w)
        s, v = attrs.get("SET"), attrs.get("VALIDATION")
        rec.split = {("train", "False"): "train", ("train", "True"): "valid", ("test", "False"): "test",
                     ("test", None): "test"}.get((s, v), "none")
        mask = masks[sid][1]
        bad_lab = sorted(set(lab) - set(SS_STATES))
        bad_mask = sorted(set(mask) - set("01"))
        if rec.split == "none":
            rec.refuse("bad_split", f"sampled.fasta header SET={s} VALIDATION={v}")
        elif bad_lab or bad_mask:
            rec.refuse("bad_label", f"structure letters {bad_lab} / mask letters {bad_mask} not allowed")
        elif len(lab) != len(mask):
            rec.refuse("length_mismatch", f"label {len(lab)} vs mask {len(mask)} characters")
        else:
            rec.label = "".join(c if m == "1" else SS_UNRESOLVED for c, m in zip(lab, mask))
    for sid in sorted((set(labels) | set(masks)) - set(seqs)):
        r = Record(f"{rel}:{'sampled' if sid in labels else 'mask'}.fasta", sid, "none", "", "")
        r.refuse("missing_label", "label / mask record without a sequence in sequences.fasta")
        out.append(r)
    return out


READERS = {"scl2205": read_scl, "esol": read_esol, "secondary_structure": read_ss}


# ----------------------------------------------------------------------------------------------
# Per-record checks, valid split, overlap removal
# ----------------------------------------------------------------------------------------------

def check_records(records: list[Record]) -> None:
    """Normalise / refuse in place (sequence rules of data/prepare.py, ids, per-residue lengths), then
    make ids unique per task (a repeat gets '#2', '#3', ...)."""
    for r in records:
        if r.fate != "kept":
            continue
        if not r.id or any(c in r.id for c in "\t\n\r"):
            r.refuse("bad_id", f"id {r.id!r} is empty or holds a tab / newline")
            continue
        c = clean_sequence(r.raw)
        if c.reason:
            r.refuse(c.reason, c.detail)
            continue
        r.seq, r.lower, r.stop = c.normalised, c.lowercase, c.final_stop
        if r.per_residue and len(r.label) != len(r.seq):
            r.refuse("length_mismatch", f"label {len(r.label)} characters vs sequence {len(r.seq)} residues"
                     + (" (a final '*' was stripped from the sequence)" if r.stop else ""))
            r.seq = None
    seen = Counter()
    for r in records:
        if r.fate == "kept":
            seen[r.id] += 1
            if seen[r.id] > 1:
                r.id, r.renamed = f"{r.id}#{seen[r.id]}", True


def make_valid(records: list[Record], seed: int, frac: float) -> tuple[int, int]:
    """Move a seeded `frac` of the distinct train sequences (all their records) to valid.
    Returns (distinct train sequences, distinct sequences moved)."""
    keys = list(dict.fromkeys(r.key for r in records if r.fate == "kept" and r.split == "train"))
    n = int(round(frac * len(keys)))
    chosen = {keys[i] for i in np.random.default_rng(seed).permutation(len(keys))[:n]}
    for r in records:
        if r.fate == "kept" and r.split == "train" and r.key in chosen:
            r.split = "valid"
    return len(keys), n


_DECODE = np.full(256, ord("?"), dtype=np.uint8)  # token id -> residue letter ('?' never in a probe)
_DECODE[FIRST_RESIDUE_ID:FIRST_RESIDUE_ID + len(RESIDUES)] = np.frombuffer(RESIDUES.encode(), np.uint8)


def shard_keys_in(path: str, wanted: dict[bytes, object], lengths: np.ndarray) -> tuple[set[bytes], int, int]:
    """Which of the `wanted` keys (first MATCH_RESIDUES residues, ASCII) are the first MATCH_RESIDUES
    residues of a sequence of one shard.  Only sequences whose capped length is in `lengths` are compared.
    Returns (keys found, sequences in the shard, tokens in the shard).  Raises ValueError on bad framing."""
    toks = read_shard(path)
    if len(toks) == 0:
        return set(), 0, 0
    starts = np.flatnonzero(toks == CLS_ID)
    if starts.size == 0 or starts[0] != 0:
        raise ValueError(f"{path}: does not start with <cls>")
    ends = np.append(starts[1:], len(toks)) - 1  # the <eos> of each sequence
    if (toks[ends] != EOS_ID).any():
        raise ValueError(f"{path}: a sequence does not end with <eos> (check it with data/check.py)")
    n = np.minimum(ends - starts - 1, MATCH_RESIDUES)
    pick = np.flatnonzero(np.isin(n, lengths))
    text = _DECODE[np.asarray(toks)].tobytes()
    found = set()
    for s, k in zip(starts[pick].tolist(), n[pick].tolist()):
        key = text[s + 1:s + 1 + k]
        if key in wanted:
            found.add(key)
    return found, int(starts.size), int(len(toks))


def remove_training_overlap(tasks: dict[str, list[Record]], sources: list[tuple[str, list[str]]]) -> dict:
    """Mark probe records whose key is in a training shard as 'overlap:<source>' (first source that has it).
    Returns {source: {"files", "sequences", "tokens", "found": {task: {split: n}}}} for the report."""
    wanted = {}
    for recs in tasks.values():
        for r in recs:
            if r.fate == "kept":
                wanted.setdefault(r.key.encode("ascii"), []).append(r)
    lengths = np.array(sorted({len(k) for k in wanted}), dtype=np.int64)
    info = {}
    for name, paths in sources:
        found, nseq, ntok = set(), 0, 0
        for p in paths:
            f, s, t = shard_keys_in(p, wanted, lengths)
            found |= f
            nseq += s
            ntok += t
        counts = defaultdict(Counter)
        for key in found:
            for r in wanted[key]:
                counts[r.task][r.split] += 1
                if r.fate == "kept":
                    r.fate = f"overlap:{name}"
        info[name] = {"files": len(paths), "sequences": nseq, "tokens": ntok, "found": counts}
    return info


def remove_cross_split(records: list[Record]) -> None:
    """Test kept whole; valid loses sequences in test; train loses sequences in valid or test."""
    for split, later in (("valid", ("test",)), ("train", ("test", "valid"))):
        have = {s: {r.key for r in records if r.fate == "kept" and r.split == s} for s in later}
        for r in records:
            if r.fate == "kept" and r.split == split:
                for s in later:
                    if r.key in have[s]:
                        r.fate = f"cross_split:in_{s}"
                        break


def read_task(task: str, raw: Path, seed: int = 0, valid_frac: float = 0.1) -> tuple[list[Record], str]:
    """Read and check one task's records (no overlap removal yet).  Returns (records, note on the split)."""
    records = READERS[task](Path(raw))
    for r in records:
        r.task = task
    check_records(records)
    note = SPLIT_NOTES[task]
    if not any(r.fate == "kept" and r.split == "valid" for r in records):
        distinct, moved = make_valid(records, seed, valid_frac)
        note += (f"; valid = made from train: the records of {moved} of its {distinct} distinct sequences "
                 f"(first round({valid_frac} x {distinct}) of numpy.random.default_rng({seed}).permutation"
                 f"({distinct}), sequences in file order)")
    return records, note


# ----------------------------------------------------------------------------------------------
# Output: TSV.gz per task, REPORT.txt
# ----------------------------------------------------------------------------------------------

def write_tsv_gz(path: Path, records: list[Record]) -> int:
    """Write the kept records (train, valid, test; source order inside a split).  Returns bytes written."""
    buf = io.StringIO()
    buf.write("\t".join(HEADER) + "\n")
    for split in SPLITS:
        for r in records:
            if r.fate == "kept" and r.split == split:
                buf.write(f"{r.id}\t{r.split}\t{r.label}\t{r.seq}\n")
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f, gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0, compresslevel=9) as g:
        g.write(buf.getvalue().encode("utf-8"))
    os.replace(tmp, path)
    return path.stat().st_size


def read_probes(path) -> list[dict]:
    """Read a probe file back: list of {'id', 'split', 'label', 'sequence'} (label stays a string)."""
    with gzip.open(path, "rt", encoding="utf-8", newline="\n") as f:
        lines = f.read().split("\n")
    if lines[-1] == "":
        lines.pop()
    if tuple(lines[0].split("\t")) != HEADER:
        raise ValueError(f"{path}: header {lines[0]!r}, expected {'<TAB>'.join(HEADER)}")
    rows = []
    for n, line in enumerate(lines[1:], 2):
        parts = line.split("\t")
        if len(parts) != 4:
            raise ValueError(f"{path}: line {n} has {len(parts)} fields, expected 4")
        rows.append(dict(zip(HEADER, parts)))
    return rows


def _manifest(raw: Path) -> dict[str, dict]:
    p = raw / "MANIFEST.tsv"
    if not p.is_file():
        return {}
    with open(p, newline="", encoding="utf-8") as f:
        return {row["file"]: row for row in csv.DictReader(f, delimiter="\t")}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _label_distribution(task: str, recs: list[Record]) -> list[str]:
    if not recs:
        return ["(none kept)"]
    if task == "esol":
        v = np.array([float(r.label) for r in recs])
        q = np.quantile(v, [0, 0.25, 0.5, 0.75, 1])
        return [f"n={len(v)} mean={v.mean():.4f} sd={v.std():.4f} min={q[0]:.4g} q25={q[1]:.4g} "
                f"median={q[2]:.4g} q75={q[3]:.4g} max={q[4]:.4g}"]
    if task == "secondary_structure":
        c = Counter()
        for r in recs:
            c.update(r.label)
        tot = sum(c.values())
        return ["residues " + "  ".join(f"{s}={c[s]} ({c[s] / tot:.1%})" for s in SS_STATES + SS_UNRESOLVED)]
    c = Counter(r.label for r in recs)
    return [f"{n:6d}  {lab}" for lab, n in sorted(c.items(), key=lambda x: (-x[1], x[0]))]


def _rel(path) -> str:
    """A path as shown in the report: relative to the repository root, or ../ beside it, else as is."""
    p = Path(path).resolve()
    for base, prefix in ((ROOT, ""), (ROOT.parent, "../")):
        try:
            return prefix + str(p.relative_to(base))
        except ValueError:
            pass
    return str(path)


def format_report(results: dict, sources: list[tuple[str, list[str]]], shard_info: dict, raw: Path,
                  seed: int, valid_frac: float, sizes: dict[str, int]) -> str:
    """REPORT.txt: inputs, per task and split the counts and label distribution, every refused record,
    every removed record.  Deterministic (no times), so a rebuild gives the same bytes."""
    man = _manifest(raw)
    src_tag = {name: f"src{i + 1}" for i, (name, _) in enumerate(sources)}
    L = ["Probe sets of the representation benchmark, built by data/make_probes.py",
         f"seed {seed}, valid_frac {valid_frac} (only for a task without a valid split), overlap key = the "
         f"first {MATCH_RESIDUES} residues", f"raw inputs: {_rel(raw)}/ (source paths below are relative to it)", "",
         "Training data removed from every probe split (a record counts under the first source holding it):"]
    for name, paths in sources:
        i = shard_info[name]
        L.append(f"  {src_tag[name]} = {name}: {i['files']} file(s), {i['sequences']:,} sequences, "
                 f"{i['tokens']:,} tokens")
        for p in paths:
            L.append(f"         {_rel(p)}")
    L += ["", "Columns: read = records in the source (per split, after the valid split is made); refused = "
          "failed a check (reasons below); srcN = removed as in training data; in_valid / in_test = train or "
          "valid record removed because the same sequence is in a later probe split; kept = written.",
          "read = refused + srcN... + in_valid + in_test + kept.", ""]
    for task, (records, note) in results.items():
        L.append(f"== {task} ==  ->  {task}.tsv.gz ({sizes.get(task, 0):,} bytes)")
        for rel in TASK_FILES[task]:
            m = man.get(rel, {})
            L.append(f"  source {rel}: {m.get('source_repo', '?')} @ {m.get('commit', '?')} : "
                     f"{m.get('source_path', '?')}; licence: {m.get('license', '?')}")
            if (raw / rel).is_file():
                L.append(f"         sha256 {_sha256(raw / rel)}")
        L.append(f"  split: {note}")
        by_split = defaultdict(list)
        for r in records:
            by_split[r.split].append(r)
        reasons = sorted({r.fate.split(":", 1)[1] for r in records if r.fate.startswith("refused:")})
        cols = (["split", "read", "refused"] + [src_tag[n] for n, _ in sources] + ["in_valid", "in_test", "kept",
                "lower", "stop", "id#"])
        rows = []
        for split in [*SPLITS, "none"]:
            rs = by_split.get(split, [])
            if split == "none" and not rs:
                continue
            f = Counter(r.fate for r in rs)
            row = [split, len(rs), sum(v for k, v in f.items() if k.startswith("refused:"))]
            row += [f[f"overlap:{n}"] for n, _ in sources]
            row += [f["cross_split:in_valid"], f["cross_split:in_test"], f["kept"],
                    sum(r.lower for r in rs), sum(r.stop for r in rs), sum(r.renamed for r in rs)]
            assert row[1] == sum(row[2:-3]), (task, split, row)
            rows.append(row)
        rows.append(["total", *[sum(r[j] for r in rows) for j in range(1, len(cols))]])
        widths = [max(len(str(c)), *(len(f"{r[j]:,}" if isinstance(r[j], int) else r[j]) for r in rows))
                  for j, c in enumerate(cols)]
        fmt = lambda vals: "  " + "  ".join(  # noqa: E731
            (f"{v:,}" if isinstance(v, int) else str(v)).rjust(w) for v, w in zip(vals, widths))
        L += [fmt(cols), *[fmt(r) for r in rows]]
        L.append("  (lower / stop / id# = records of the split normalised: upper-cased, final '*' stripped, "
                 "id suffixed to be unique; whatever their fate)")
        if reasons:
            for split in [*SPLITS, "none"]:
                f = Counter(r.fate for r in by_split.get(split, []) if r.fate.startswith("refused:"))
                if f:
                    L.append(f"  refused in {split}: "
                             + ", ".join(f"{k.split(':', 1)[1]}={v}" for k, v in sorted(f.items())))
        else:
            L.append("  refused: none")
        for name, _ in sources:
            found = shard_info[name]["found"].get(task, {})
            L.append(f"  records found in {src_tag[name]} (whether or not an earlier source had them): "
                     + ", ".join(f"{s}={found.get(s, 0)}" for s in SPLITS))
        for split in SPLITS:
            kept = [r for r in by_split.get(split, []) if r.fate == "kept"]
            lengths = [len(r.seq) for r in kept]
            keys = Counter(r.key for r in kept)
            dup = sum(n - 1 for n in keys.values() if n > 1)
            conflict = sum(1 for k, n in keys.items() if n > 1
                           and len({r.label for r in kept if r.key == k}) > 1)
            L.append(f"  {split}: kept {len(kept)}, residues {sum(lengths):,}, length "
                     f"{min(lengths, default=0)}-{max(lengths, default=0)}, longer than {MATCH_RESIDUES}: "
                     f"{sum(n > MATCH_RESIDUES for n in lengths)}; identical sequences kept inside the split: "
                     f"{dup} extra record(s) ({conflict} group(s) with differing labels)")
            L += [f"    {x}" for x in _label_distribution(task, kept)]
        L.append("")
    L.append("Refused records (task, split, file, id, reason, detail):")
    n = 0
    for task, (records, _) in results.items():
        for r in records:
            if r.fate.startswith("refused:"):
                L.append(f"  {task}\t{r.split}\t{r.file}\t{r.id}\t{r.fate.split(':', 1)[1]}\t{r.detail}")
                n += 1
    L += ["  (none)"] if n == 0 else []
    L += ["", "Removed records (task, split, id, where the same sequence is):"]
    for task, (records, _) in results.items():
        for r in records:
            if r.fate.startswith(("overlap:", "cross_split:")):
                kind, where = r.fate.split(":", 1)
                L.append(f"  {task}\t{r.split}\t{r.id}\t{src_tag[where] if kind == 'overlap' else where}")
    return "\n".join(L) + "\n"


def resolve_sources(patterns: list[str]) -> list[tuple[str, list[str]]]:
    """[(pattern as given, sorted matching files)]; a relative pattern matching nothing from the current
    directory is tried from the repository root.  A pattern matching nothing is an error."""
    out = []
    for pat in patterns:
        paths = sorted(glob.glob(pat))
        if not paths and not os.path.isabs(pat):
            paths = sorted(glob.glob(str(ROOT / pat)))
        if not paths:
            hint = BUILD_HINTS.get(pat)
            raise ProbeError(f"--train_shards {pat!r} matches no file" + (f"; build it with: {hint}" if hint else ""))
        out.append((pat, paths))
    return out


def build(raw, out, train_shards=DEFAULT_TRAIN_SHARDS, tasks=TASKS, seed=0, valid_frac=0.1,
          stderr_limit=50, log=None) -> dict:
    """Read, check, de-overlap and write the probe sets; messages go to `log` (default sys.stderr).
    Returns {task: (records, split note)}."""
    raw, out, log = Path(raw), Path(out), log or sys.stderr
    sources = resolve_sources(list(train_shards))
    results = {t: read_task(t, raw, seed, valid_frac) for t in tasks}
    shard_info = remove_training_overlap({t: r for t, (r, _) in results.items()}, sources)
    for records, _ in results.values():
        remove_cross_split(records)
    out.mkdir(parents=True, exist_ok=True)
    sizes = {t: write_tsv_gz(out / f"{t}.tsv.gz", records) for t, (records, _) in results.items()}
    report = format_report(results, sources, shard_info, raw, seed, valid_frac, sizes)
    (out / "REPORT.txt").write_text(report, encoding="utf-8")
    shown = 0
    for t, (records, _) in results.items():
        for r in records:
            if r.fate.startswith("refused:"):
                if shown < stderr_limit:
                    print(f"refused: {t}: {r.file}: {r.id}: {r.fate.split(':', 1)[1]}: {r.detail}", file=log)
                shown += 1
        f = Counter(r.fate.split(":", 1)[0] for r in records)
        print(f"{t}: read {len(records)}, kept {f['kept']}, refused {f['refused']}, removed as in training "
              f"data {f['overlap']}, removed as in a later probe split {f['cross_split']} "
              f"-> {out / (t + '.tsv.gz')} ({sizes[t]:,} bytes)", file=log)
    if shown > stderr_limit:
        print(f"... {shown - stderr_limit} more refused records in {out / 'REPORT.txt'}", file=log)
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"report: {out / 'REPORT.txt'}; {out} holds {total:,} bytes"
          + (f"  WARNING: above the {SIZE_LIMIT:,}-byte limit for the committed copy" if total > SIZE_LIMIT else ""),
          file=log)
    return results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description="Build the probe datasets (scl2205, esol, secondary_structure) as "
                    "<out>/<task>.tsv.gz (columns id, split, label, sequence) + REPORT.txt, with every probe "
                    "sequence that is in the training shards (first 1,022 residues) removed.",
        epilog="example: python data/make_probes.py --train_shards 'data/shards/mine_train_*.bin'",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--raw", type=Path, default=DEFAULT_RAW, help="folder of the raw probe files (MANIFEST.tsv)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    ap.add_argument("--train_shards", nargs="+", default=list(DEFAULT_TRAIN_SHARDS), metavar="GLOB",
                    help="shard globs of the training data of the probed models; probe sequences found there "
                         "are removed (relative globs: from the current directory, else the repository root)")
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS,
                    help="tasks to build (REPORT.txt then covers only these)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the valid split made from train (esol)")
    ap.add_argument("--valid_frac", type=float, default=0.1, help="share of distinct train sequences made valid "
                                                                  "for a task without a valid split")
    ap.add_argument("--stderr_limit", type=int, default=50, help="refused records printed on stderr "
                                                                 "(REPORT.txt lists all)")
    args = ap.parse_args(argv)
    try:
        build(args.raw, args.out, args.train_shards, args.tasks, args.seed, args.valid_frac, args.stderr_limit)
    except (ProbeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
