"""Tests for data/prepare.py (tokeniser, shard format, FASTA/text converter, sample split file).

Run: python -m pytest -q tests/test_data.py      (CPU only, a few seconds)
(data/check.py and data/download.py have tests/test_check.py and tests/test_download.py.)
The module is loaded from its path with importlib because data/ is not a package.
"""

import gzip
import importlib.util
import io
import json
import random
import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("prepare", ROOT / "data" / "prepare.py")
prep = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(prep)

LETTERS = "LAGVSERTIDPKQNFYMHWCXBUZO"


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------

def decode(tokens) -> list[str]:
    """Split a shard's token stream into residue strings, checking the <cls> ... <eos> framing."""
    t = np.asarray(tokens)
    out, i = [], 0
    ends = np.flatnonzero(t == prep.EOS_ID)
    for e in ends:
        assert t[i] == prep.CLS_ID
        out.append("".join(LETTERS[x - 4] for x in t[i + 1: e]))
        i = e + 1
    assert i == len(t)
    return out


def build(tmp_path, files: dict, splits: dict | None = None, **kw):
    """Write files (name -> str or bytes; '.gz' names are gzip'd), convert them, return
    (result, {split: [sequences]}, report text)."""
    paths = []
    for name, content in files.items():
        p = tmp_path / name
        data = content.encode() if isinstance(content, str) else content
        p.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
        paths.append((p, (splits or {}).get(name)))
    kw.setdefault("valid_frac", 0.0)
    kw.setdefault("test_frac", 0.0)
    res = prep.build_shards(paths, tmp_path / "out", "t", log=io.StringIO(), **kw)
    seqs = {s: [q for path, _ in res.shards[s] for q in decode(prep.read_shard(path))]
            for s in prep.SPLITS}
    return res, seqs, res.report_path.read_text()


def summary(res, name):
    return next(f for f in res.files if Path(f.path).name == name)


# ------------------------------------------------------------------------------------------------
# tokeniser
# ------------------------------------------------------------------------------------------------

def test_tokenize_ids_exact():
    assert prep.tokenize("LAGV").tolist() == [4, 5, 6, 7]
    assert prep.tokenize("XBUZO").tolist() == [24, 25, 26, 27, 28]
    assert prep.tokenize("SERTIDPKQNFYMHWC").tolist() == list(range(8, 24))
    assert prep.tokenize("lagv").tolist() == [4, 5, 6, 7]
    assert prep.tokenize("MKV").dtype == np.uint8
    assert prep.VOCAB[:4] == ["<cls>", "<pad>", "<eos>", "<unk>"]
    assert prep.VOCAB[29:] == [".", "-", "<null_1>", "<mask>"]


@pytest.mark.parametrize("bad,char", [("MKJV", "'J'"), ("MK1", "'1'"), ("MK V", "' '"),
                                      ("MK*V", "'*'"), ("MKé", "'é'")])
def test_tokenize_rejects_other_characters(bad, char):
    with pytest.raises(ValueError, match=char):
        prep.tokenize(bad)


def test_clean_sequence_rules():
    c = prep.clean_sequence("mkv*")
    assert c.tokens.tolist() == [20, 15, 7] and c.lowercase and c.final_stop
    assert c.normalised == "MKV"
    assert prep.clean_sequence("MK*V").reason == "internal_stop"
    assert prep.clean_sequence("MKV**").reason == "internal_stop"  # only ONE final '*' is stripped
    assert prep.clean_sequence("*").reason == "empty"
    assert prep.clean_sequence("").reason == "empty"
    r = prep.clean_sequence("MKBJ")
    assert r.reason == "invalid_char" and "'J'" in r.detail and "position 4" in r.detail


# ------------------------------------------------------------------------------------------------
# shard format
# ------------------------------------------------------------------------------------------------

def test_shard_round_trip(tmp_path):
    seqs = [prep.with_cls_eos(prep.tokenize(s)) for s in ["MKV", "LAGVXBUZO", "W" * 1000]]
    path = tmp_path / "x_train_000000.bin"
    n = prep.write_shard(path, seqs)
    assert n == 5 + 11 + 1002
    assert path.stat().st_size == 1024 + n
    header = np.fromfile(path, dtype="<i4", count=256)
    assert header[:3].tolist() == [20240520, 1, n] and not header[3:].any()
    got = prep.read_shard(path)
    assert isinstance(got, np.memmap) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, np.concatenate(seqs))
    assert decode(got) == ["MKV", "LAGVXBUZO", "W" * 1000]


def _corrupt(tmp_path, fix):
    path = tmp_path / "bad_train_000000.bin"
    prep.write_shard(path, [prep.with_cls_eos(prep.tokenize("MKVL"))])
    raw = bytearray(path.read_bytes())
    fix(raw)
    path.write_bytes(bytes(raw))
    return path


def _set_int(i, value):
    def fix(raw):
        raw[4 * i: 4 * i + 4] = int(value).to_bytes(4, "little", signed=True)
    return fix


@pytest.mark.parametrize("fix,what", [
    (_set_int(0, 12345), "magic"),
    (_set_int(1, 2), "version"),
    (_set_int(2, 7), "truncated"),               # token count larger than the file holds
    (lambda raw: raw.extend(b"\x00\x01"), "trailing"),
    (lambda raw: raw.__delitem__(slice(100, None)), "header"),
])
def test_corrupt_shard_raises_naming_file(tmp_path, fix, what):
    path = _corrupt(tmp_path, fix)
    with pytest.raises(ValueError, match=what) as e:
        prep.read_shard(path)
    assert str(path) in str(e.value)


# ------------------------------------------------------------------------------------------------
# reading records
# ------------------------------------------------------------------------------------------------

def test_read_records_fasta_multiline_crlf_and_orphans(tmp_path):
    p = tmp_path / "a.fa"
    p.write_bytes(b"MKV\r\n\r\n>r1 some description\r\nMKV\r\nLL\r\n>r2\r\n>r3\r\nAG\r\n")
    assert list(prep.read_records(p)) == [(None, "MKV", 1), ("r1", "MKVLL", 3), ("r2", "", 6),
                                          ("r3", "AG", 7)]


def test_read_records_plain_text_and_gz(tmp_path):
    p = tmp_path / "a.txt.gz"
    p.write_bytes(gzip.compress(b"MKV\n\nlla\r\nGG*\n"))
    assert prep.sniff_format(p) == "text"
    assert list(prep.read_records(p)) == [("line 1", "MKV", 1), ("line 3", "lla", 3),
                                          ("line 4", "GG*", 4)]


@pytest.mark.parametrize("content", [b">a\nMKV\x00\x01\x02\n", b">a\nMK\xff\xfeV\n",
                                     b"\x89PNG\r\n\x1a\n\x00\x00"])
def test_binary_input_is_an_error_naming_the_file(tmp_path, content):
    p = tmp_path / "weird.fa"
    p.write_bytes(content)
    with pytest.raises(ValueError, match="weird.fa"):
        list(prep.read_records(p))
    with pytest.raises(ValueError, match="weird.fa"):
        build(tmp_path, {"ok.fa": ">a\nMKV\n"} | {"weird.fa": content})


def test_corrupt_gzip_is_an_error_naming_the_file(tmp_path):
    p = tmp_path / "broken.fa.gz"
    rng = random.Random(0)
    body = "".join(f">r{i}\n{''.join(rng.choices(LETTERS, k=60))}\n" for i in range(500))
    data = gzip.compress(body.encode())
    p.write_bytes(data[: len(data) // 2])  # truncated gzip stream
    with pytest.raises(ValueError, match="broken.fa.gz"):
        list(prep.read_records(p))


# ------------------------------------------------------------------------------------------------
# converter
# ------------------------------------------------------------------------------------------------

def test_normalisations_counted(tmp_path, capsys):
    res, seqs, report = build(tmp_path, {"a.fa": ">low\nmkv\nlla\n>up\nMKVLLA\n>stop x\nGGW*\n"})
    assert sorted(seqs["train"]) == ["GGW", "MKVLLA", "MKVLLA"]
    fs = summary(res, "a.fa")
    assert fs.lowercase == 1 and fs.final_stop == 1
    assert fs.kept["train"] == 3 and sum(fs.refused.values()) == 0
    assert "lower=1 stop=1" in report


def test_refusals_reported_with_record_id(tmp_path, capsys):
    fasta = (">good1\nMKV\n"
             ">stopinside desc\nMK*VL\n"
             ">jrec\nMKJV\n"
             ">digit\nMK1V\n"
             ">spaced\nMK V\n"
             ">emptyrec\n"
             ">good2\nLLAG\n")
    res, seqs, report = build(tmp_path, {"r.fa": fasta})
    err = capsys.readouterr().err
    assert sorted(seqs["train"]) == ["LLAG", "MKV"]
    fs = summary(res, "r.fa")
    assert dict(fs.refused) == {"internal_stop": 1, "invalid_char": 3, "empty": 1}
    assert dict(fs.bad_chars) == {"'J'": 1, "'1'": 1, "' '": 1}
    for rid, reason, detail in [("stopinside", "internal_stop", "internal '*' at position 3"),
                                ("jrec", "invalid_char", "'J'"), ("digit", "invalid_char", "'1'"),
                                ("spaced", "invalid_char", "' '"), ("emptyrec", "empty", "empty")]:
        line = next(x for x in report.splitlines() if f": {rid} (line" in x)
        assert "r.fa" in line and f"[{reason}]" in line and detail in line
        assert line in err  # the same message went to stderr


def test_sequence_before_header_refused(tmp_path, capsys):
    res, seqs, report = build(tmp_path, {"o.fa": "MKVLL\nAAG\n>h1\nWWW\n"})
    assert seqs["train"] == ["WWW"]
    assert dict(summary(res, "o.fa").refused) == {"before_header": 1}
    assert "o.fa: line 1: refused [before_header]" in report


@pytest.mark.parametrize("body, n", [(b">only one\nMKV\n", 1), (b">a\nMKV\n>b\nLLA\n", 2), (b"MKV\nLLA\n", 2)])
def test_utf8_byte_order_mark_is_skipped(tmp_path, capsys, body, n):
    """A UTF-8 byte-order mark (Windows editors write one) is encoding, not a character of line 1:
    FASTA with one record or more and plain text, gzip'd or not, read and convert as without it."""
    bom = b"\xef\xbb\xbf"
    for name in ("x.fa", "x.fa.gz"):
        p = tmp_path / name
        p.write_bytes(gzip.compress(bom + body) if name.endswith(".gz") else bom + body)
        q = tmp_path / ("plain_" + name)
        q.write_bytes(gzip.compress(body) if name.endswith(".gz") else body)
        assert prep.sniff_format(p) == prep.sniff_format(q)
        assert list(prep.read_records(p)) == list(prep.read_records(q))
    (tmp_path / "out").mkdir()
    with_mark = build(tmp_path / "out", {"m.fa": bom + body, "m.fa.gz": bom + body})
    (tmp_path / "ref").mkdir()
    without = build(tmp_path / "ref", {"m.fa": body, "m.fa.gz": body})
    assert with_mark[1] == without[1] and len(with_mark[1]["train"]) == 2 * n  # n records in each of 2 files
    assert sum(sum(f.refused.values()) for f in with_mark[0].files) == 0


def test_utf8_byte_order_mark_before_a_table_header(tmp_path, capsys):
    (tmp_path / "a.csv").write_bytes(b"\xef\xbb\xbfseq,id\nMKV,p1\n")
    out = tmp_path / "o"
    rc = prep.main([str(tmp_path / "a.csv"), "--name", "tab", "--out", str(out), "--column", "seq",
                    "--id_column", "id", "--valid_frac", "0", "--test_frac", "0"])
    assert rc == 0 and decode(prep.read_shard(out / "tab_train_000000.bin")) == ["MKV"]


def test_windows_line_endings_gz_and_plain_text(tmp_path, capsys):
    files = {"win.fa": b">w1 x\r\nMKV\r\nLLA\r\n>w2\r\nggg*\r\n",
             "zip.fasta.gz": ">z1\nMKVLLA\n>z2\nWC\n",
             "plain.txt": "MKVW\nmkvw\n\nGG*\nMKJ\n"}
    res, seqs, report = build(tmp_path, files)
    assert sorted(seqs["train"]) == sorted(["MKVLLA", "GGG", "MKVLLA", "WC", "MKVW", "MKVW", "GG"])
    assert summary(res, "win.fa").final_stop == 1 and summary(res, "win.fa").lowercase == 1
    plain = summary(res, "plain.txt")
    assert plain.kept["train"] == 3 and plain.lowercase == 1 and plain.final_stop == 1
    assert dict(plain.refused) == {"invalid_char": 1}
    assert "plain.txt: line 5: refused [invalid_char]: character 'J'" in report


def test_identical_sequences_never_in_two_splits(tmp_path, capsys):
    rng = random.Random(0)
    pool = ["".join(rng.choice(LETTERS[:20]) for _ in range(rng.randint(5, 40))) for _ in range(300)]
    a = "".join(f">a{i}\n{s}\n" for i, s in enumerate(pool))
    b = "".join(f">b{i}\n{s.lower()}*\n" for i, s in enumerate(reversed(pool)))  # same, normalised
    res, seqs, _ = build(tmp_path, {"a.fa": a, "b.fa": b}, valid_frac=0.25, test_frac=0.25)
    sets = {s: set(v) for s, v in seqs.items()}
    assert all(len(v) > 30 for v in sets.values())
    assert not (sets["train"] & sets["valid"] or sets["train"] & sets["test"]
                or sets["valid"] & sets["test"])
    assert sum(len(v) for v in seqs.values()) == 600  # every copy kept, in the same split
    for seq in pool:  # the assignment is the documented hash rule
        split = prep.hash_split(seq.encode(), 0.25, 0.25)
        assert seqs[split].count(seq) == 2


def test_split_by_file(tmp_path, capsys):
    files = {"org1.fa": ">t1\nMKVL\n>t2\nSHARED\n", "org2.fa": ">t3\nGGGG\n",
             "vorg.fa": ">v1\nWWWW\n>v2\nSHARED\n", "torg.fa": ">x1\nCCCC\n>x2\nWWWW\n"}
    res, seqs, report = build(tmp_path, files, splits={"vorg.fa": "valid", "torg.fa": "test"})
    # test files first, then valid, then the rest: WWWW stays in test, SHARED stays in valid
    assert sorted(seqs["train"]) == ["GGGG", "MKVL"]
    assert sorted(seqs["valid"]) == ["SHARED"]
    assert sorted(seqs["test"]) == ["CCCC", "WWWW"]
    assert "WWWW" not in seqs["valid"] and "SHARED" not in seqs["train"]
    assert summary(res, "vorg.fa").dropped["cross_split_duplicate"] == 1
    assert summary(res, "org1.fa").dropped["cross_split_duplicate"] == 1
    assert "identical to a sequence already in valid" in report


def test_cli_fails_when_no_sequence_is_kept(tmp_path, capsys):
    """Only empty or refused records: exit 1 and say that no shard was written (a script must not go on)."""
    (tmp_path / "empty.fa").write_text("")
    (tmp_path / "bad.fa").write_text(">x\nMK1V\n")
    out = tmp_path / "shards"
    assert prep.main([str(tmp_path), "--name", "none", "--out", str(out), "--workers", "1"]) == 1
    err = capsys.readouterr().err
    assert "no sequence was kept from the 2 input file(s), so no shard was written" in err
    assert not list(out.glob("none_*.bin"))


def test_split_by_file_globs_on_command_line(tmp_path, capsys):
    for name, body in {"ecoli.fa": ">e\nMKV\n", "yeast.fa": ">y\nLLA\n", "mouse.fa.gz": None}.items():
        data = b">m1\nWWC\n>m2\nGGA\n" if body is None else body.encode()
        (tmp_path / name).write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    out = tmp_path / "shards"
    rc = prep.main([str(tmp_path), "--name", "cli", "--out", str(out),
                    "--valid_files", "ecoli*", "--test_files", "*mouse*"])
    assert rc == 0
    got = {s: decode(prep.read_shard(out / f"cli_{s}_000000.bin")) for s in prep.SPLITS}
    assert got["train"] == ["LLA"] and got["valid"] == ["MKV"]
    assert sorted(got["test"]) == ["GGA", "WWC"]
    with pytest.raises(SystemExit):  # a glob matching no input is a usage error
        prep.main([str(tmp_path), "--name", "cli", "--out", str(out), "--valid_files", "nomatch*"])


def test_dedup_shards_sidecar_and_shuffle(tmp_path, capsys):
    rng = random.Random(1)
    pool = ["".join(rng.choice(LETTERS[:20]) for _ in range(rng.randint(1, 300))) for _ in range(200)]
    pool[0] = "MKVXBUZOXX"
    long_seq = "ACDEFGHIKLMNPQRSTVWY" * 2500  # 50,000 residues: kept whole, never truncated
    body = "".join(f">s{i}\n{s}\n" for i, s in enumerate(pool + pool[:10] + [long_seq]))
    kw = dict(shard_tokens=5000, dedup=True, seed=3)
    res, seqs, _ = build(tmp_path, {"d.fa": body}, **kw)
    assert summary(res, "d.fa").dropped["duplicate"] == 10
    assert sorted(seqs["train"]) == sorted(pool + [long_seq])
    shards = res.shards["train"]
    assert len(shards) >= 5
    for k, (path, st) in enumerate(shards):
        assert path.name == f"t_train_{k:06d}.bin"
        tokens = prep.read_shard(path)
        assert st["tokens"] == len(tokens) and (len(tokens) <= 5000 or st["sequences"] == 1)
        side = json.loads(path.with_suffix(".json").read_text())
        assert side["tokens"] == len(tokens) == side["residues"] + 2 * side["sequences"]
        assert sum(side["length_histogram"].values()) == side["sequences"]
    assert any(st["max_length"] == 50_000 and st["length_histogram"] == {"32768": 1}
               for _, st in shards)
    assert sum(st["noncanonical"]["X"] for _, st in shards) == 3
    assert sum(st["noncanonical"]["O"] for _, st in shards) == 1
    # deterministic: same seed -> identical bytes; order inside a shard is not the input order
    first = [p.read_bytes() for p, _ in shards]
    res2 = prep.build_shards([(tmp_path / "d.fa", None)], tmp_path / "out", "t", valid_frac=0,
                             test_frac=0, log=io.StringIO(), **kw)
    assert [p.read_bytes() for p, _ in res2.shards["train"]] == first
    in_order = [s for s in pool if s in set(decode(prep.read_shard(shards[0][0])))]
    assert decode(prep.read_shard(shards[0][0])) != in_order


# ------------------------------------------------------------------------------------------------
# embedded sample
# ------------------------------------------------------------------------------------------------

def test_sample_split_file():
    items = prep.read_split_file(ROOT / "data" / "sample" / "SPLITS.txt")
    splits = {s: [p for p, sp in items if sp == s] for s in prep.SPLITS}
    assert all(splits.values())
    assert all(p.is_file() for p, _ in items)
    assert sum(p.stat().st_size for p, _ in items) <= 15e6
    assert not any("coli" in p.name.lower() for p, _ in items)
    genus = {s: set() for s in prep.SPLITS}
    for path, split in items:  # genus from the first header: 'OS=Genus ...' or '[Genus ...]'
        with gzip.open(path, "rt") as f:
            header = f.readline()
        m = re.search(r"OS=(\w+)|\[(\w+)", header)
        if m:
            genus[split].add(m.group(1) or m.group(2))
    assert genus["valid"] and genus["test"] and len(genus["train"]) >= 4
    assert not (genus["valid"] & genus["test"] or genus["valid"] & genus["train"]
                or genus["test"] & genus["train"])


# ------------------------------------------------------------------------------------------------
# fast (chunked, vectorised, parallel) converter: same answers as the per-record reference
# ------------------------------------------------------------------------------------------------

def _messy_fasta(seed: int, n: int = 400) -> str:
    """Random FASTA with every kind of bad input mixed in (multi-line, CRLF, blank lines)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        seq = "".join(rng.choices(LETTERS, k=rng.randint(1, 200)))
        kind = rng.random()
        if kind < 0.05:
            seq = seq.lower()
        elif kind < 0.10:
            seq += "*"
        elif kind < 0.13:
            seq = seq[:3] + "*" + seq[3:]
        elif kind < 0.16:
            seq = seq[:2] + rng.choice(["J", "1", " ", "\t", "é", "\x01", ".", "-", "**"]) + seq[2:]
        elif kind < 0.18:
            seq = ""
        elif kind < 0.19:
            seq = "*"
        nl = "\r\n" if rng.random() < 0.2 else "\n"
        lines = [seq[j: j + 60] for j in range(0, len(seq), 60)] or []
        if rng.random() < 0.05:
            lines.append("")  # blank line inside a record
        header = rng.choice([f">r{i} desc {i}", f">r{i}", ">"]) if rng.random() < 0.98 else f">r{i}\t"
        out.append(nl.join([header, *lines]) + nl)
    return "".join(out)


def _reference(path):
    """Kept normalised sequences and refusal lines by the per-record reader + clean_sequence."""
    kept, lines = [], set()
    for rid, raw, n in prep.read_records(path):
        if rid is None:
            lines.add(f"{path}: line {n}: refused [before_header]")
            continue
        c = prep.clean_sequence(raw)
        if c.reason:
            lines.add(f"{path}: {rid} (line {n}): refused [{c.reason}]: {c.detail}")
        else:
            kept.append(c.normalised)
    return kept, lines


@pytest.mark.parametrize("gz", [False, True])
def test_fast_path_matches_per_record_reference(tmp_path, capsys, gz):
    text = "MKV\nLL\n" + _messy_fasta(5) + ">long\n" + "ACDEFGHIKLMNPQRSTVWY" * 2000 + "\n"
    name = "m.fa.gz" if gz else "m.fa"
    path = tmp_path / name
    path.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
    kept, ref_lines = _reference(path)
    runs = []
    # (3000, 2): the main process streams chunks to 2 workers; (60000, 2): the file is small
    # enough to be one task, read and decompressed by a worker
    for chunk_bytes, workers in [(1 << 22, 1), (3000, 1), (3000, 2), (60000, 2)]:
        out = tmp_path / f"o{chunk_bytes}_{workers}"
        res = prep.build_shards([(path, None)], out, "t", valid_frac=0.1, test_frac=0.1,
                                log=io.StringIO(), workers=workers, chunk_bytes=chunk_bytes,
                                shard_tokens=20000, stderr_limit=0)
        got = [q for s in prep.SPLITS for p, _ in res.shards[s] for q in decode(prep.read_shard(p))]
        assert sorted(got) == sorted(kept)
        assert "ACDEFGHIKLMNPQRSTVWY" * 2000 in got  # 40,000 residues, whole, across chunks
        report = res.report_path.read_text()
        refusals = {ln if "before_header" not in ln else ln.split(": sequence")[0]
                    for ln in report.splitlines() if ": refused [" in ln}
        assert refusals == ref_lines
        fs = res.files[0]
        assert sum(fs.refused.values()) == len(ref_lines)
        runs.append([p.read_bytes() for s in prep.SPLITS for p, _ in res.shards[s]])
    assert runs[0] == runs[1] == runs[2] == runs[3]  # byte-identical whatever chunks / workers



def test_duplicate_messages_same_whatever_workers(tmp_path, capsys):
    """Dropped records are named by id in every mode: one process, chunks sent to workers, and
    whole files read by workers (ids of kept records then travel back with the chunk text)."""
    rng = random.Random(7)
    pool = ["".join(rng.choices(LETTERS[:20], k=rng.randint(5, 60))) for _ in range(40)]
    files = {}
    for f in range(3):
        recs = [f">f{f}_r{i} desc\n{rng.choice(pool)}\n" for i in range(300)]
        recs.append(f">f{f}_bad\nMKJ\n")
        files[f"d{f}.fa"] = "".join(recs)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    inputs = [(tmp_path / "d0.fa", "valid"), (tmp_path / "d1.fa", None), (tmp_path / "d2.fa", None)]
    reports = []
    for chunk_bytes, workers in [(1 << 22, 1), (2000, 2), (1 << 20, 2)]:
        out = tmp_path / f"o{chunk_bytes}_{workers}"
        res = prep.build_shards(inputs, out, "t", valid_frac=0.0, test_frac=0.1, dedup=True,
                                log=io.StringIO(), workers=workers, chunk_bytes=chunk_bytes,
                                stderr_limit=0)
        reports.append(res.report_path.read_text())
    assert reports[0] == reports[1] == reports[2]
    assert "d1.fa: f1_r" in reports[0] and "dropped [duplicate]" in reports[0]
    assert "dropped [cross_split_duplicate]" in reports[0]
    assert "d2.fa: f2_bad (line 601): refused [invalid_char]: character 'J'" in reports[0]

def test_parse_chunk_counts_and_ids():
    ch = prep.parse_chunk(b">a x\nmkv*\n>b\nMK*V\n>c\r\nLL\r\nAA\r\n>d\n", "fasta", "f.fa", 10)
    assert ch.n_records == 4 and ch.kept.tolist() == [0, 2] and ch.lengths.tolist() == [3, 4]
    assert ch.framed.tolist() == [0, 20, 15, 7, 2, 0, 4, 4, 5, 5, 2]
    assert ch.lowercase == 1 and ch.final_stop == 1
    assert [r[:3] for r in ch.refused] == [(1, 12, "internal_stop"), (3, 17, "empty")]
    assert [ch.record_id(i) for i in range(4)] == ["a", "b", "c", "d"]
    assert ch.line_nos.tolist() == [10, 12, 14, 17]
    assert ch.digests[:16] == prep._digest(b"MKV") and ch.digests[16:] == prep._digest(b"LLAA")


def test_tabs_and_other_letters_refused(tmp_path, capsys):
    res, seqs, report = build(tmp_path, {"t.fa": ">tab\nMK\tV\n>omega\nMKΩ\n>ok\nMKV\n>dot\nMK.V\n"})
    assert seqs["train"] == ["MKV"]
    assert "t.fa: tab (line 1): refused [invalid_char]: character '\\t' at position 3" in report
    assert "t.fa: omega (line 3): refused [invalid_char]: character 'Ω' at position 3" in report
    assert "t.fa: dot (line 7): refused [invalid_char]: character '.' at position 3" in report


def test_empty_file_is_reported_not_a_crash(tmp_path, capsys):
    res, seqs, report = build(tmp_path, {"empty.fa": "", "ok.fa": ">a\nMKV\n"})
    assert seqs["train"] == ["MKV"]
    assert sum(summary(res, "empty.fa").kept.values()) == 0
    assert "empty.fa: warning: no records (empty file)" in report
    assert "empty.fa: warning" in capsys.readouterr().err


def test_truncated_gz_aborts_cleanly_naming_file(tmp_path, capsys):
    rng = random.Random(0)
    body = "".join(f">r{i}\n{''.join(rng.choices(LETTERS, k=60))}\n" for i in range(25000))
    data = gzip.compress(body.encode())  # 1.7 MB: the 1 MB sniffed up front is fine, the end not
    (tmp_path / "a_ok.fa").write_text(">x\nMKV\n")
    (tmp_path / "b_cut.fa.gz").write_bytes(data[: len(data) * 2 // 3])
    out = tmp_path / "shards"
    rc = prep.main([str(tmp_path), "--name", "cut", "--out", str(out), "--workers", "1",
                    "--chunk_mb", "0.01"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "b_cut.fa.gz: cannot read (EOFError" in err and "truncated" in err
    assert "Traceback" not in err
    assert not list(out.glob("cut_*.bin")) and not list(out.glob("cut_*.json"))
    assert "ABORTED" in (out / "cut_report.txt").read_text()


def test_binary_file_cli_exit_2_naming_file_and_line(tmp_path, capsys):
    (tmp_path / "ok.fa").write_text(">x\nMKV\n")
    (tmp_path / "bin.fa").write_bytes(b">a\nMKV\n>b\nMK\x00\x07V\n")
    rc = prep.main([str(tmp_path / "ok.fa"), str(tmp_path / "bin.fa"), "--name", "b",
                    "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "bin.fa: line 4: binary input (NUL byte" in err and "Traceback" not in err


def test_long_protein_40000_kept_whole_in_own_shard(tmp_path, capsys):
    long_seq = "".join(random.Random(2).choices(LETTERS[:20], k=40_000))
    fasta = ">s1\nMKV\n>giant\n" + "\n".join(long_seq[i: i + 80] for i in range(0, 40_000, 80)) \
        + "\n>s2\nLLA\n"
    res, seqs, _ = build(tmp_path, {"g.fa": fasta}, shard_tokens=1000, chunk_bytes=4096)
    assert sorted(seqs["train"]) == sorted(["MKV", long_seq, "LLA"])
    sizes = [st["tokens"] for _, st in res.shards["train"]]
    assert 40_002 in sizes and len(sizes) == 3


def test_table_columns_csv_and_tsv_gz(tmp_path, capsys):
    (tmp_path / "a.csv").write_text('id,seq,other\np1,MKV,x\np2,"mk*",y\np3,MKJ,z\n\np4,,w\n')
    (tmp_path / "b.tsv.gz").write_bytes(gzip.compress(b"seq\tid\nLLAG\tq1\nWW W\tq2\n"))
    out = tmp_path / "o"
    rc = prep.main([str(tmp_path), "--name", "tab", "--out", str(out), "--column", "seq",
                    "--id_column", "id", "--valid_frac", "0", "--test_frac", "0"])
    assert rc == 0
    got = decode(prep.read_shard(out / "tab_train_000000.bin"))
    assert sorted(got) == ["LLAG", "MK", "MKV"]
    report = (out / "tab_report.txt").read_text()
    assert "a.csv: p3 (line 4): refused [invalid_char]: character 'J' at position 3" in report
    assert "a.csv: p4 (line 6): refused [empty]" in report
    assert "b.tsv.gz: q2 (line 3): refused [invalid_char]: character ' ' at position 3" in report
    assert "lower=1 stop=1" in report
    capsys.readouterr()
    rc = prep.main([str(tmp_path / "a.csv"), "--name", "tab", "--out", str(out), "--column", "nope"])
    assert rc == 2 and "a.csv: no column 'nope' (columns: id, seq, other)" in capsys.readouterr().err


def test_stats_flag_and_progress(tmp_path, capsys):
    (tmp_path / "s.fa").write_text(">a\nMKVXXL\n>b\nWWBU\n")
    rc = prep.main([str(tmp_path / "s.fa"), "--name", "st", "--out", str(tmp_path / "o"),
                    "--valid_frac", "0", "--test_frac", "0", "--stats", "--progress"])
    cap = capsys.readouterr()
    assert rc == 0
    assert "st_train_000000.bin: 2 sequences, 10 residues" in cap.out
    assert "histogram [2^k:n] 4:2" in cap.out and "non-canonical X=2 B=1 U=1 Z=0 O=0" in cap.out
    assert "100.0%" in cap.err and "MB text" in cap.err
