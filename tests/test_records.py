"""records/: every folder is complete and well-formed, records/README.md's tables are the ones the checker
computes from the logs, the checker's statistics equal scipy's, and `bash run.sh experiments` batches run.

Run: python -m pytest -q tests/test_records.py      (CPU, ~20 s; scipy comes with scikit-learn)
"""
import importlib.util
import json
import math
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT

RECORDS = ROOT / "records"
FOLDERS = sorted(p for p in RECORDS.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))

_spec = importlib.util.spec_from_file_location("check_record", RECORDS / "check_record.py")
cr = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cr)


def test_there_are_folders():
    assert len(FOLDERS) >= 2, "records/ should hold at least the baseline and one more folder"


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_folder_is_complete_and_every_log_is_well_formed(folder):
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}_[A-Za-z0-9]+", folder.name), "name: <YYYY-MM-DD>_<ShortName>"
    assert (folder / "train_plm.py").is_file()
    readme = (folder / "README.md").read_text()
    assert re.search(rf"^# {re.escape(folder.name.split('_')[0])} \S+: \S", readme, re.M), \
        "README.md's first heading: '# <date> <ShortName>: <what changed>'"
    runs, errors = cr.read_folder(folder)
    assert errors == [] and runs
    source = (folder / "train_plm.py").read_bytes()
    for log in folder.glob("*.txt"):
        assert log.read_bytes().startswith(source + cr.SEPARATOR), log
    for run in runs:
        for key in ("preset", "seed", "world_size", "val_loss", "test_loss", "steps", "tokens", "train_time_s",
                    "tokens_per_s", "params", "device"):
            assert key in run.result, (run.path, key)
        assert run.result["params"] < 150_000_000
        assert run.curve and run.curve[-1][2] == pytest.approx(run.val_loss, abs=5.5e-5 + 1e-9), \
            "the last val line of the log is the RESULT's val_loss"


def _readme_tables():
    """{header line: [row lines]} of records/README.md."""
    tables, current = {}, None
    for line in (RECORDS / "README.md").read_text().splitlines():
        if line.startswith("| ") and current is None:
            current = line
            tables[current] = []
        elif line.startswith("|") and current is not None:
            if not line.startswith("|---"):
                tables[current].append(line)
        else:
            current = None
    return tables


def test_every_folder_is_in_exactly_one_table_with_the_row_the_checker_computes():
    tables = _readme_tables()
    kinds = {cr.TABLE_HEADERS[k][0]: k for k in ("record", "experiment")}  # every folder is in one of these
    assert set(kinds) <= set(tables), "records/README.md lacks the records or the experiments table"
    seen = {}
    for header, kind in kinds.items():
        for row in tables[header]:
            m = re.search(r"\[([^\]]+)\]\(\1/README\.md\) \|$", row)
            assert m, f"row without a folder link: {row}"
            name = m.group(1)
            assert name not in seen, f"{name} is in more than one table"
            seen[name] = (kind, row)
    assert sorted(seen) == [f.name for f in FOLDERS]
    for name, (kind, row) in seen.items():
        folder = RECORDS / name
        runs, _ = cr.read_folder(folder)
        stats = cr.folder_stats(runs, 2.70)
        # ranks are relative to the other records; compare the row without its first cell for records
        [expected] = cr.table_rows([(folder, runs, stats)], kind, 2.70, 3.5)
        if kind == "record":
            row, expected = row.split("|", 2)[2], expected.split("|", 2)[2]
        assert row == expected, f"{name}: the README row is not what `check_record.py --table` prints"


@pytest.mark.parametrize("values", [[2.68, 2.69, 2.685], [2.71, 2.69, 2.70, 2.695], [2.5, 2.9], [2.699, 2.6991,
                                                                                                   2.6989]])
def test_t_test_equals_scipy(values):
    stats = pytest.importorskip("scipy.stats")
    t, df, p = cr.t_test_less(values, 2.70)
    ref = stats.ttest_1samp(values, 2.70, alternative="less")
    assert df == len(values) - 1
    assert t == pytest.approx(ref.statistic, rel=1e-9)
    assert p == pytest.approx(ref.pvalue, rel=1e-7, abs=1e-12)


def test_a_tampered_log_is_reported(tmp_path):
    src = FOLDERS[0]
    (tmp_path / "train_plm.py").write_bytes((src / "train_plm.py").read_bytes() + b"# edited after the run\n")
    log = next(src.glob("*.txt"))
    (tmp_path / log.name).write_bytes(log.read_bytes())
    runs, errors = cr.read_folder(tmp_path)
    assert runs == [] and "does not begin with a byte-identical copy" in errors[0]
    assert cr.main([str(tmp_path)]) == 1


def test_statistical_check_and_speed_up(tmp_path, capsys):
    """Three synthetic seeds below the target pass --require_pass; the speed-up over the baseline is printed."""
    base = RECORDS / "2026-11-29_ReferencePreset"
    source = b"# a trainer\n"
    (tmp_path / "train_plm.py").write_bytes(source)
    (tmp_path / "README.md").write_text("# 2026-12-01 Synthetic: three seeds\n")
    for seed, (loss, time_s) in enumerate([(2.690, 100.0), (2.692, 101.0), (2.688, 99.0)]):
        result = dict(preset="speedrun", seed=seed, world_size=1, val_loss=loss, train_time_s=time_s,
                      device="NVIDIA H200", gpu_hours=time_s / 3600)
        config = dict(steps=10, seed=seed, valid_files=cr.REFERENCE_VALID)
        (tmp_path / f"s{seed}.txt").write_bytes(source + cr.SEPARATOR + f"config {json.dumps(config)}\n"
                                                f"step:10/10 val_loss:{loss} train_time:{time_s}s\n"
                                                f"RESULT {json.dumps(result)}\n".encode())
    assert cr.main([str(tmp_path), "--require_pass", "--previous", str(base)]) == 0
    out = capsys.readouterr().out
    prev = json.loads(next(l for l in next(base.glob("*.txt")).read_text().splitlines()
                           if l.startswith("RESULT "))[7:])["train_time_s"]
    assert f"= {prev / 100.0:.3f}x" in out
    assert "PASS" in out
    runs, _ = cr.read_folder(tmp_path)
    assert not math.isnan(cr.folder_stats(runs, 2.70)["p"]) and cr.folder_stats(runs, 2.70)["passed"]
    # the same losses above the target fail
    assert cr.main([str(tmp_path), "--require_pass", "--target", "2.68"]) == 3


def _synthetic_folder(folder, runs):
    """Logs of a fake trainer: runs = [(seed, val_loss, steps_done, steps_planned, world_size)]."""
    source = b"# a trainer\n"
    folder.mkdir(exist_ok=True)
    (folder / "train_plm.py").write_bytes(source)
    (folder / "README.md").write_text("# 2026-12-01 Synthetic: runs\n")
    for i, (seed, loss, done, planned, ws) in enumerate(runs):
        result = dict(preset="speedrun", seed=seed, world_size=ws, val_loss=loss, train_time_s=100.0, steps=done,
                      device="NVIDIA H200", gpu_hours=ws * 100.0 / 3600)
        config = dict(steps=planned, seed=seed, valid_files=cr.REFERENCE_VALID)
        body = (f"config {json.dumps(config)}\nstep:{done}/{planned} val_loss:{loss} "
                f"train_time:100.0s\nRESULT {json.dumps(result)}\n")
        (folder / f"r{i}.txt").write_bytes(source + cr.SEPARATOR + body.encode())
    return folder


@pytest.mark.parametrize("runs, problem", [
    ([(0, 2.60, 300, 300, 1), (1, 2.61, 160, 300, 1), (2, 2.59, 300, 300, 1)], "stopped before the end"),
    ([(0, 2.60, 300, 300, 1), (0, 2.61, 300, 300, 1), (2, 2.59, 300, 300, 1)], "seeds repeat"),
    ([(0, 2.60, 300, 300, 1), (1, 2.61, 300, 300, 2), (2, 2.59, 300, 300, 1)], "different hardware"),
])
def test_rule_breaking_runs_fail_the_check(tmp_path, capsys, runs, problem):
    """Losses well below the target, but an early stop, a repeated seed or mixed hardware fails the record."""
    folder = _synthetic_folder(tmp_path / "f", runs)
    assert cr.main([str(folder), "--require_pass", "--table"]) == 3
    out = capsys.readouterr().out
    assert problem in out and "FAIL" in out
    row = next(l for l in out.splitlines() if l.startswith("| —"))
    assert problem in row  # the table says why it is unranked
    good = _synthetic_folder(tmp_path / "g", [(0, 2.60, 300, 300, 1), (1, 2.61, 300, 300, 1), (2, 2.59, 300, 300, 1)])
    assert cr.main([str(good), "--require_pass"]) == 0


def _quality_folder(folder, runs):
    """Logs of a fake trainer with --probe true: runs = [(seed, quality_score or None, train_time_s)]."""
    source = b"# a trainer\n"
    folder.mkdir()
    (folder / "train_plm.py").write_bytes(source)
    (folder / "README.md").write_text("# 2026-12-01 Synthetic: probes\n")
    for i, (seed, q, time_s) in enumerate(runs):
        loss = 2.2 + 0.01 * seed
        result = dict(preset="speedrun", seed=seed, world_size=1, val_loss=loss, train_time_s=time_s, steps=480,
                      device="NVIDIA H200", gpu_hours=time_s / 3600)
        if q is not None:
            result["quality_score"] = q
        body = (f"config {json.dumps(dict(steps=480, seed=seed))}\nstep:480/480 val_loss:{loss} "
                f"train_time:{time_s}s\nRESULT {json.dumps(result)}\n")
        (folder / f"q{i}.txt").write_bytes(source + cr.SEPARATOR + body.encode())
    return folder


def test_quality_track_check_and_table(tmp_path, capsys):
    """Quality track: >= 3 seeds with a quality_score, each within the training budget; ranked by mean score."""
    good = _quality_folder(tmp_path / "2026-12-01_Good", [(0, 0.60, 170.0), (1, 0.62, 171.0), (2, 0.61, 169.0)])
    better = _quality_folder(tmp_path / "2026-12-02_Better", [(0, 0.63, 175.0), (1, 0.64, 176.0), (2, 0.65, 174.0)])
    assert cr.main([str(good), str(better), "--track", "quality", "--require_pass", "--table", "quality"]) == 0
    out = capsys.readouterr().out
    rows = [l for l in out.splitlines() if l.startswith("| 1 |") or l.startswith("| 2 |")]
    assert rows[0].startswith("| 2 | 0.6100 ± 0.0100 (n=3) |") and "2026-12-01_Good" in rows[0]
    assert rows[1].startswith("| 1 | 0.6400 ± 0.0100 (n=3) |") and "2026-12-02_Better" in rows[1]
    for i, (runs, problem) in enumerate([
            ([(0, 0.6, 170.0), (1, 0.6, 181.0), (2, 0.6, 170.0)], "over the 180 s training budget"),
            ([(0, 0.6, 170.0), (1, None, 170.0), (2, 0.6, 170.0)], "no quality_score"),
            ([(0, 0.6, 170.0), (1, 0.6, 170.0)], "the rules need >= 3")]):
        bad = _quality_folder(tmp_path / f"bad{i}", runs)
        assert cr.main([str(bad), "--track", "quality", "--require_pass", "--table", "quality"]) == 3
        out = capsys.readouterr().out
        assert problem in out and "quality track check" in out and "FAIL" in out
    for bad_arg in (["--price_per_gpu_hour", "-3"], ["--budget_s", "0"]):
        with pytest.raises(SystemExit) as usage:  # a usage error: 2, not the failed check's 3
            cr.main([str(good), *bad_arg])
        assert usage.value.code == 2
    # the same folder passes the quality track with a larger budget
    assert cr.main([str(tmp_path / "bad0"), "--track", "quality", "--require_pass", "--budget_s", "200"]) == 0


def test_tampered_or_copied_logs_and_other_splits_fail(tmp_path, capsys):
    """What a hand-edited folder would get past a checker that trusts RESULT lines: an edited val_loss, a log
    copied under another seed, another validation split, settings that differ, no README."""
    good = [(0, 2.60, 300, 300, 1), (1, 2.61, 300, 300, 1), (2, 2.59, 300, 300, 1)]
    folder = _synthetic_folder(tmp_path / "edited", good)
    log = folder / "r1.txt"
    log.write_text(log.read_text().replace('"val_loss": 2.61', '"val_loss": 2.41'))
    assert cr.main([str(folder), "--require_pass"]) == 1
    out = capsys.readouterr().out
    assert "is not the log's last validation line" in out and "malformed log(s)" in out and "FAIL" in out
    folder = _synthetic_folder(tmp_path / "copied", good)
    (folder / "r3.txt").write_text((folder / "r0.txt").read_text().replace('"seed": 0', '"seed": 9'))
    assert cr.main([str(folder), "--require_pass"]) == 3
    assert "identical curves and times (copied logs?): r0.txt, r3.txt" in capsys.readouterr().out
    for edit, problem in [(lambda t: t.replace(cr.REFERENCE_VALID, "data/easy/easy_valid_*.bin"), "validation split"),
                          (lambda t: t.replace('"steps": 300', '"steps": 300, "lr_hidden": 0.9'), "settings differ")]:
        folder = _synthetic_folder(tmp_path / problem.replace(" ", "_"), good)
        (folder / "r2.txt").write_text(edit((folder / "r2.txt").read_text()))
        assert cr.main([str(folder), "--require_pass"]) == 3
        assert problem in capsys.readouterr().out
    folder = _synthetic_folder(tmp_path / "no_readme", good)
    (folder / "README.md").unlink()
    assert cr.main([str(folder), "--require_pass"]) == 3
    assert "no README.md" in capsys.readouterr().out


def test_run_sh_experiment_batch(tmp_path):
    """`bash run.sh experiments FOLDER`: every .args file runs (comments and quotes handled), a failed one does
    not stop the batch, the summary has a row per file, and the exit status says a run failed."""
    batch = tmp_path / "batch"
    batch.mkdir()
    common = (f"--log_dir {tmp_path / 'logs'} --out_dir {tmp_path / 'ck'} --save_model false --eval_every 0 "
              "--nelbo_grid 0 --num_layers 1 --model_dim 32 --num_heads 2 --mlp_dim 64 --tokens_per_micro_batch 1024 "
              "--tokens_per_step 1024 --max_length 256\n")
    (batch / "a_bad.args").write_text("--no_such_flag 1\n")
    (batch / "b_tiny.args").write_text("# two steps of a tiny model\n--steps 2   # trailing comment\n"
                                       "--objective 'mlm'\n\n" + common)
    env = {**os.environ, "PYTHON": sys.executable}
    r = subprocess.run(["bash", "run.sh", "experiments", str(batch)], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 1, r.stdout[-2000:] + r.stderr[-2000:]
    summary = r.stdout[r.stdout.index("run.sh: experiments summary"):]
    assert "(1 finished, 1 failed)" in summary
    assert re.search(r"^a_bad\s+FAILED \(exit 2\)", summary, re.M)
    assert re.search(r"^b_tiny\s+\d\.\d{5}\s+\d+\.\d\d", summary, re.M)
    assert (tmp_path / "logs" / "b_tiny.txt").exists()  # its run_id is the file stem
    for argv, rc, text in [(["experiments"], 2, "usage"), (["experiments", str(tmp_path / "nope")], 1, "not a folder")]:
        r = subprocess.run(["bash", "run.sh", *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == rc and text in r.stderr
