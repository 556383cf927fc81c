"""Tests for data/make_probes.py and the committed probe sets data/probes/<task>.tsv.gz (+ REPORT.txt).

What they claim (data/README.md, "Probe sets"): the files parse (header id/split/label/sequence, unique ids,
train/valid/test present); labels are valid (the 13 scl2205 classes, finite eSol floats in [0, 1],
secondary-structure strings as long as the sequence over H/E/C/-); the splits share no sequence (first
1,022 residues); no probe sequence is in the train split of the embedded sample or of the reference
shards; the counts in REPORT.txt are the files' counts; a rebuild gives the same bytes; refusals,
normalisations and overlap removals are reported on a small synthetic input; data/probes/ <= 10 MB.
Shards are decoded here with plain numpy, independently of the script.
"""

import gzip
import importlib.util
import json
import math
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import write_sequences

ROOT = Path(__file__).resolve().parents[1]
PROBES = ROOT / "data" / "probes"
SHARED = ROOT.parent / "shared"
RAW = SHARED / "data" / "probes"
_spec = importlib.util.spec_from_file_location("make_probes", ROOT / "data" / "make_probes.py")
mp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mp)

TASKS = ("scl2205", "esol", "secondary_structure")
RESIDUES = "LAGVSERTIDPKQNFYMHWCXBUZO"  # ESM-2 ids 4..28
KEY = 1022
SCL_CLASSES = {"Cytoplasm", "Plastid", "Secreted", "Mitochondrion", "Membrane", "Peroxisome", "Nucleus",
               "Cell projection", "ER", "Cytoplasm;Nucleus",
               "Centrosome;Cytoplasm;Cytoskeleton;Microtubule organizing center", "Cytoplasm;Membrane",
               "Cytoplasm;Cytoskeleton"}
SOURCE_RECORDS = {"scl2205": 19074, "esol": 2364 + 783, "secondary_structure": 11156}


def load(path):
    """Parse a probe file with the standard library only: list of (id, split, label, sequence)."""
    with gzip.open(path, "rb") as f:
        lines = f.read().decode("utf-8").split("\n")
    assert lines[0] == "id\tsplit\tlabel\tsequence"
    assert lines[-1] == ""  # a final newline, no blank line inside
    rows = [tuple(line.split("\t")) for line in lines[1:-1]]
    assert all(len(r) == 4 for r in rows)
    return rows


@pytest.fixture(scope="module")
def committed():
    return {t: load(PROBES / f"{t}.tsv.gz") for t in TASKS}


def shard_keys(paths):
    """First KEY residues of every sequence in the shards (header checked, <cls> ... <eos> framing)."""
    letters = np.full(256, ord("?"), dtype=np.uint8)
    letters[4:29] = np.frombuffer(RESIDUES.encode(), np.uint8)
    keys, n = set(), 0
    for p in paths:
        data = np.fromfile(p, dtype=np.uint8)
        header = data[:1024].view("<i4")
        assert (header[0], header[1], header[2]) == (20240520, 1, len(data) - 1024), p
        toks = data[1024:]
        text = letters[toks].tobytes().decode("ascii")
        starts, ends = np.flatnonzero(toks == 0), np.flatnonzero(toks == 2)
        assert len(starts) == len(ends) and (starts < ends).all(), p
        for s, e in zip(starts.tolist(), ends.tolist()):
            keys.add(text[s + 1:e][:KEY])
        n += len(starts)
    return keys, n


@pytest.fixture(scope="module")
def sample_train(tmp_path_factory):
    """The embedded sample, built fresh (python data/prepare.py --sample --out TMP)."""
    out = tmp_path_factory.mktemp("sample")
    subprocess.run([sys.executable, str(ROOT / "data" / "prepare.py"), "--sample", "--out", str(out),
                    "--workers", "1", "--no-progress"], check=True, capture_output=True)
    return sorted(out.glob("sample_train_*.bin"))


@pytest.fixture(scope="module")
def reference_train(tmp_path_factory):
    """The reference shards, built fresh from ../shared (skipped where ../shared/bench is absent)."""
    script = SHARED / "bench" / "make_reference_shards.py"
    if not script.is_file() or not (SHARED / "data" / "proteins").is_dir():
        pytest.skip(f"{script} or ../shared/data/proteins absent: the reference shards cannot be built here")
    out = tmp_path_factory.mktemp("reference")
    subprocess.run([sys.executable, str(script), str(SHARED / "data" / "proteins"), str(out), "reference",
                    "40000000"], check=True, capture_output=True)
    return sorted(out.glob("reference_train_*.bin"))


# ----------------------------------------------------------------------------------------------
# the committed files
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("task", TASKS)
def test_file_parses_with_valid_records(committed, task):
    rows = committed[task]
    assert len(rows) > 1000
    ids = [r[0] for r in rows]
    assert len(set(ids)) == len(ids) and all(ids)
    splits = [r[1] for r in rows]
    assert set(splits) == {"train", "valid", "test"}
    order = {"train": 0, "valid": 1, "test": 2}
    assert [order[s] for s in splits] == sorted(order[s] for s in splits)  # train, then valid, then test
    for _, _, _, seq in rows:
        assert seq and set(seq) <= set(RESIDUES), seq[:50]
    assert mp.read_probes(PROBES / f"{task}.tsv.gz") == [dict(zip(("id", "split", "label", "sequence"), r))
                                                          for r in rows]


def test_scl_labels_are_the_13_classes(committed):
    rows = committed["scl2205"]
    assert len(SCL_CLASSES) == 13
    for split in ("train", "valid", "test"):
        assert {r[2] for r in rows if r[1] == split} == SCL_CLASSES, split
    labels = RAW / "pypi_p-scldata-2025.6.0" / "data__labels.json"
    if labels.is_file():  # the source defines exactly these 13
        assert set(json.loads(labels.read_text())["index_to_label"].values()) == SCL_CLASSES


def test_esol_labels_are_finite_solubilities(committed):
    values = [float(r[2]) for r in committed["esol"]]
    assert all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in values)
    assert all(r[2] == repr(float(r[2])) for r in committed["esol"])
    assert 0.3 < float(np.mean(values)) < 0.7 and float(np.std(values)) > 0.2  # not a constant column


def test_secondary_structure_labels(committed):
    counts = {c: 0 for c in "HEC-"}
    for _, _, label, seq in committed["secondary_structure"]:
        assert len(label) == len(seq)
        assert set(label) <= set("HEC-"), label
        for c in counts:
            counts[c] += label.count(c)
    total = sum(counts.values())
    assert all(counts[c] / total > 0.15 for c in "HEC")
    assert 0 < counts["-"] / total < 0.15  # unresolved residues (FLIP mask 0) are marked, not dropped


@pytest.mark.parametrize("task", TASKS)
def test_splits_share_no_sequence(committed, task):
    keys = {s: {r[3][:KEY] for r in committed[task] if r[1] == s} for s in ("train", "valid", "test")}
    assert not keys["train"] & keys["valid"]
    assert not keys["train"] & keys["test"]
    assert not keys["valid"] & keys["test"]


def report_table(text, task):
    """{split: {column: int}} from the counts table of `task` in REPORT.txt."""
    block = text.split(f"== {task} ==", 1)[1].split("\n== ", 1)[0]
    lines = block.splitlines()
    head = next(i for i, line in enumerate(lines) if line.split()[:2] == ["split", "read"])
    cols = lines[head].split()
    table = {}
    for line in lines[head + 1:]:
        vals = line.split()
        table[vals[0]] = {c: int(v.replace(",", "")) for c, v in zip(cols[1:], vals[1:])}
        if vals[0] == "total":
            return table


@pytest.mark.parametrize("task", TASKS)
def test_report_counts_match_files(committed, task):
    text = (PROBES / "REPORT.txt").read_text()
    table = report_table(text, task)
    for split in ("train", "valid", "test"):
        assert table[split]["kept"] == sum(r[1] == split for r in committed[task]), split
        row = table[split]
        assert row["read"] == sum(v for c, v in row.items() if c not in ("read", "lower", "stop", "id#"))
    assert table["total"]["read"] == SOURCE_RECORDS[task]
    assert table["total"]["src1"] > 0 and table["total"]["src2"] > 0  # both training sets overlap every task
    assert "src1 = data/shards/sample_train_*.bin" in text
    assert "src2 = data/reference/reference_train_*.bin" in text


def test_esol_valid_is_a_seeded_tenth_of_train():
    text = (PROBES / "REPORT.txt").read_text()
    m = re.search(r"valid = made from train: the records of (\d+) of its (\d+) distinct sequences", text)
    assert m and int(m.group(1)) == round(0.1 * int(m.group(2)))
    table = report_table(text, "esol")
    assert table["train"]["read"] + table["valid"]["read"] == 2364


def test_total_size_at_most_10_mb():
    files = [p for p in PROBES.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"REPORT.txt", *(f"{t}.tsv.gz" for t in TASKS)}
    assert sum(p.stat().st_size for p in files) <= 10_000_000


def test_no_probe_sequence_in_sample_train(committed, sample_train):
    keys, n = shard_keys(sample_train)
    assert n == 33446 and len(keys) > 33000  # the sample as documented in data/README.md
    for task, rows in committed.items():
        hits = [r[0] for r in rows if r[3][:KEY] in keys]
        assert hits == [], (task, hits[:5])


def test_no_probe_sequence_in_reference_train(committed, reference_train):
    keys, n = shard_keys(reference_train)
    assert n == 159117  # the reference shards of ../shared/bench/README.md
    for task, rows in committed.items():
        hits = [r[0] for r in rows if r[3][:KEY] in keys]
        assert hits == [], (task, hits[:5])


def test_rebuild_gives_the_committed_files(tmp_path, sample_train, reference_train):
    if not RAW.is_dir():
        pytest.skip(f"{RAW} absent: the raw probe sets are not available here")
    out = tmp_path / "probes"
    train = [str(sample_train[0].parent / "sample_train_*.bin"),
             str(reference_train[0].parent / "reference_train_*.bin")]
    assert mp.main(["--raw", str(RAW), "--out", str(out), "--train_shards", *train]) == 0
    for t in TASKS:
        assert (out / f"{t}.tsv.gz").read_bytes() == (PROBES / f"{t}.tsv.gz").read_bytes(), t


# ----------------------------------------------------------------------------------------------
# the script on a small synthetic input
# ----------------------------------------------------------------------------------------------

def residue_ids(seq):
    return np.array([4 + RESIDUES.index(c) for c in seq])


def write_raw(raw):
    """Tiny raw sets in the real layout, with one bad record of each kind."""
    scl = raw / "pypi_p-scldata-2025.6.0"
    scl.mkdir(parents=True)
    rows = [("P1", "MKTAYIAKQR", 0), ("P2", "mktayiakqrw", 6), ("P3", "MKTJAY", 1), ("P4", "MKT*AY", 2),
            ("P5", "MKTAYIAKQR", 3), ("P6", "ACDEFGHIK", 99), ("P7", "MSEQINSHARD", 4), ("P8", "MAAAAAAAAA*", 5)]
    (scl / "data__scl2205.csv").write_text("entry,seq,scl\n" + "".join(f"{e},{s},{c}\n" for e, s, c in rows))
    (scl / "data__entries.json").write_text(json.dumps({str(i): r[0] for i, r in enumerate(rows)}))
    (scl / "data__splits.json").write_text(json.dumps({"trn": [0, 1, 5], "evl": [2, 6, 7], "tst": [3, 4]}))
    names = ["Cytoplasm", "Plastid", "Secreted", "Mitochondrion", "Membrane", "Peroxisome", "Nucleus",
             "Cell projection", "ER", "Cytoplasm;Nucleus", "x", "y", "z"]
    (scl / "data__labels.json").write_text(json.dumps({"index_to_label": dict(enumerate(names))}))
    esol = raw / "jcchan23__GraphSol"
    esol.mkdir()
    rng = np.random.default_rng(1)
    good = ["".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), 30)) for _ in range(20)]
    train = [f"g{i},0.{i:02d},{s}" for i, s in enumerate(good)] + [
        "dupA,0.5,MDUPLICATEDSEQ", "dupB,0.6,MDUPLICATEDSEQ", "bad1,abc,MKLV", "bad2,0.3,MK1L", "bad3,0.4,",
        "bad4,nan,MKLVV"]
    (esol / "Data__eSol_train.csv").write_text("gene,solubility,sequence\r\n" + "\r\n".join(train) + "\r\n")
    (esol / "Data__eSol_test.csv").write_text("gene,solubility,sequence\nt1,1.0,MQQQ\ng0,0.9,MQQQA\n")
    flip = raw / "J-SNACKKB__FLIP"
    flip.mkdir()
    with zipfile.ZipFile(flip / "secondary_structure__splits.zip", "w") as z:
        z.writestr("splits/sequences.fasta", ">s1\nMKVL\n>s2\nMKVLA\n>s3\nMK\nV*\n>s4\nMKVLAW\n")
        z.writestr("splits/sampled.fasta", ">s1 SET=train VALIDATION=False\nHHEC\n>s2 SET=test VALIDATION=False\n"
                                           "HHE\n>s3 SET=train VALIDATION=True\nCCC\n>s4 SET=test VALIDATION=False\n"
                                           "HHXCCC\n")
        z.writestr("splits/mask.fasta", ">s1\n0111\n>s2\n111\n>s3\n111\n>s4\n111111\n")


def test_synthetic_refusals_normalisations_and_overlaps(tmp_path, capsys):
    raw, out = tmp_path / "raw", tmp_path / "out"
    write_raw(raw)
    shard = write_sequences(tmp_path / "mine_train_000000.bin", [residue_ids("MSEQINSHARD"), residue_ids("MKVL")])
    assert mp.main(["--raw", str(raw), "--out", str(out), "--train_shards", str(shard)]) == 0
    err = capsys.readouterr().err
    report = (out / "REPORT.txt").read_text()
    scl_csv = "pypi_p-scldata-2025.6.0/data__scl2205.csv"
    esol_csv = "jcchan23__GraphSol/Data__eSol_train.csv"
    ss_zip = "J-SNACKKB__FLIP/secondary_structure__splits.zip:sequences.fasta"
    expected = [  # task, split, file, id, reason, detail
        ("scl2205", "valid", scl_csv, "P3", "invalid_char", "character 'J' at position 4"),
        ("scl2205", "test", scl_csv, "P4", "internal_stop", "internal '*' at position 4 of 6"),
        ("scl2205", "train", scl_csv, "P6", "bad_label", "class index '99' not in data__labels.json (line 7)"),
        ("esol", "train", esol_csv, "bad1", "bad_label", "line 24: solubility 'abc' is not a finite number"),
        ("esol", "train", esol_csv, "bad2", "invalid_char", "character '1' at position 3"),
        ("esol", "train", esol_csv, "bad3", "empty", "empty sequence"),
        ("esol", "train", esol_csv, "bad4", "bad_label", "line 27: solubility 'nan' is not a finite number"),
        ("secondary_structure", "test", ss_zip, "s2", "length_mismatch",
         "label 3 characters vs sequence 5 residues"),
        ("secondary_structure", "test", ss_zip, "s4", "bad_label",
         "structure letters ['X'] / mask letters [] not allowed"),
    ]
    for task, split, file, rid, reason, detail in expected:
        assert f"  {task}\t{split}\t{file}\t{rid}\t{reason}\t{detail}\n" in report
        assert f"refused: {task}: {file}: {rid}: {reason}: {detail}" in err
    refused = report.split("Refused records")[1].split("Removed records")[0]
    assert refused.count("\n  ") == len(expected)  # nothing else refused

    scl = {r[0]: r for r in load(out / "scl2205.tsv.gz")}
    assert sorted(scl) == ["P2", "P5", "P8"]  # P1 = P5 (in test), P7 in the training shard
    assert scl["P2"] == ("P2", "train", "Nucleus", "MKTAYIAKQRW")  # upper-cased
    assert scl["P8"] == ("P8", "valid", "Peroxisome", "MAAAAAAAAA")  # final '*' stripped
    t = report_table(report, "scl2205")
    assert t["total"] == {"read": 8, "refused": 3, "src1": 1, "in_valid": 0, "in_test": 1, "kept": 3,
                          "lower": 1, "stop": 1, "id#": 0}
    assert "  scl2205\ttrain\tP1\tin_test\n" in report and "  scl2205\tvalid\tP7\tsrc1\n" in report

    esol = load(out / "esol.tsv.gz")
    split_of = {r[0]: r[1] for r in esol}
    assert split_of["dupA"] == split_of["dupB"]  # identical sequences never straddle train and valid
    assert sum(s == "valid" for s in split_of.values()) == 2 + (split_of["dupA"] == "valid")  # round(0.1 x 21)
    assert split_of["t1"] == "test" and split_of["g0#2"] == "test" and "g0" in split_of  # repeated id suffixed
    assert report_table(report, "esol")["total"]["id#"] == 1

    ss = {r[0]: r for r in load(out / "secondary_structure.tsv.gz")}
    assert sorted(ss) == ["s3"]  # s1 is in the training shard
    assert ss["s3"] == ("s3", "valid", "CCC", "MKV")
    assert report_table(report, "secondary_structure")["total"]["stop"] == 1

    # the valid split depends on the seed only: a rebuild is byte-identical
    out2 = tmp_path / "out2"
    assert mp.main(["--raw", str(raw), "--out", str(out2), "--train_shards", str(shard)]) == 0
    for t in TASKS:
        assert (out2 / f"{t}.tsv.gz").read_bytes() == (out / f"{t}.tsv.gz").read_bytes()


def test_unresolved_residues_marked(tmp_path):
    raw = tmp_path / "raw"
    write_raw(raw)
    shard = write_sequences(tmp_path / "x_000000.bin", [residue_ids("MW")])
    assert mp.main(["--raw", str(raw), "--out", str(tmp_path / "o"), "--train_shards", str(shard),
                    "--tasks", "secondary_structure"]) == 0
    ss = {r[0]: r for r in load(tmp_path / "o" / "secondary_structure.tsv.gz")}
    assert ss["s1"] == ("s1", "train", "-HEC", "MKVL")  # mask 0 -> '-'


def test_missing_training_shards_is_an_error(tmp_path, capsys):
    raw = tmp_path / "raw"
    write_raw(raw)
    assert mp.main(["--raw", str(raw), "--out", str(tmp_path / "o"),
                    "--train_shards", str(tmp_path / "none_*.bin")]) == 2
    assert "matches no file" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
