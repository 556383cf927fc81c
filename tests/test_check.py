"""Tests for data/check.py: valid shards pass; each kind of damage is an error naming file and offset."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from conftest import shard_bytes

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("check", ROOT / "data" / "check.py")
chk = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(chk)

GOOD = [0, 5, 6, 7, 2, 0, 20, 2, 0, 4, 4, 4, 28, 2]  # 3 sequences, 14 tokens


def write(tmp_path, name, tokens, **header):
    p = tmp_path / name
    p.write_bytes(shard_bytes(tokens, **header))
    return p


def test_valid_folder_summary(tmp_path, capsys):
    write(tmp_path, "a_000000.bin", GOOD)
    write(tmp_path, "a_000001.bin", [0, 9, 2])
    assert chk.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "files=2 bad_files=0 sequences=4 tokens=17 residues=9 errors=0" in out


def test_glob_and_block_boundaries(tmp_path, monkeypatch, capsys):
    rng = np.random.default_rng(0)
    seqs = [[0, *rng.integers(4, 29, size=int(rng.integers(1, 50))).tolist(), 2] for _ in range(300)]
    write(tmp_path, "x_train_000000.bin", sum(seqs, []))
    monkeypatch.setattr(chk, "BLOCK", 37)  # records straddle the blocks
    info, errors = chk.check_shard(tmp_path / "x_train_000000.bin")
    assert errors == [] and info["sequences"] == 300
    assert chk.main([str(tmp_path / "x_*.bin"), "--quiet"]) == 0


@pytest.mark.parametrize("kw,tokens,offset,msg", [
    (dict(magic=12345), GOOD, 0, "wrong magic 12345"),
    (dict(version=2), GOOD, 4, "unsupported version 2"),
    (dict(n_tokens=100), GOOD, 8, "token count 100 larger than the file holds"),
    (dict(n_tokens=10), GOOD, 1034, "4 trailing bytes"),
    ({}, GOOD[:-1], 1036, "last token is 28, not <eos>"),
    ({}, [5] + GOOD, 1024, "first token is 5"),
    ({}, [0, 5, 0, 6, 2], 1026, "<cls> inside a record"),
    ({}, [0, 5, 2, 2], 1027, "<eos> without a <cls>"),
    ({}, [0, 5, 2, 7, 0, 6, 2], 1027, "tokens between an <eos> and the next <cls>"),
    ({}, [0, 5, 40, 2], 1026, "token id 40 >= 33"),
    ({}, [0, 2], 1025, "empty record"),
])
def test_errors_name_file_and_offset(tmp_path, capsys, kw, tokens, offset, msg):
    p = write(tmp_path, "bad_000000.bin", tokens, **kw)
    rc = chk.main([str(tmp_path)])
    err = capsys.readouterr()
    assert rc == 1
    assert f"{p}: offset {offset}: {msg}" in err.err
    assert "bad_files=1" in err.out and "errors=0" not in err.out


def test_short_file_sidecar_mismatch_and_nothing_found(tmp_path, capsys):
    (tmp_path / "s_000000.bin").write_bytes(b"\x00" * 100)
    p = write(tmp_path, "t_000000.bin", GOOD)
    p.with_suffix(".json").write_text('{"tokens": 14, "sequences": 4}')
    assert chk.main([str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "s_000000.bin: offset 0: 100 bytes, shorter than the 1024-byte header" in err
    assert "t_000000.json: sidecar says sequences=4 but the shard has 3" in err
    assert chk.main([str(tmp_path / "nothing_*.bin")]) == 1


def test_real_sample_shards_pass_with_stats(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("prepare", ROOT / "data" / "prepare.py")
    prep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prep)
    (tmp_path / "in.fa").write_text(">a\nMKVXXL\n>b\nWWBU\n>c\n" + "A" * 300 + "\n")
    import io
    prep.build_shards([(tmp_path / "in.fa", None)], tmp_path / "o", "s", valid_frac=0,
                      test_frac=0, log=io.StringIO())
    assert chk.main([str(tmp_path / "o"), "--stats"]) == 0
    out = capsys.readouterr().out
    assert "histogram [2^k:n] 4:2 256:1" in out and "non-canonical X=2 B=1 U=1 Z=0 O=0" in out
    assert "sequences=3 tokens=316 residues=310 errors=0" in out
