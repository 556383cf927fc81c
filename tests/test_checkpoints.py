"""CPU tests for the checkpoint / resume / export / tracking features of train_plm.py: exact resume, crash-safe
checkpoints, SIGTERM / SIGINT handling, the safetensors export, refusal of a checkpoint of another model, Weights
& Biases offline logging, secrets kept out of every file, the hub-upload guard and the non-finite-loss stop.

Run: python -m pytest -q tests/test_checkpoints.py      (CPU only; about a minute on 2 cores)
Needs: torch, numpy, pytest, safetensors, wandb (requirements.txt + requirements-test.txt).
"""
import dataclasses
import json
import os
import re
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

import train_plm as tp
from conftest import ROOT, random_sequences, write_sequences

torch.set_num_threads(1)  # see tests/test_train_plm.py: tiny models, 2 cores, bit-reproducible

# A tiny model; 2 micro-batches per step (gradient accumulation is part of what a resume must reproduce).
TINY = ["--preset", "cpu", "--seed", "0", "--num_layers", "2", "--model_dim", "32", "--num_heads", "2",
        "--mlp_dim", "64", "--tokens_per_micro_batch", "1024", "--tokens_per_step", "2048", "--max_length", "256",
        "--warmup_steps", "2", "--muon_momentum_warmup_steps", "3", "--eval_every", "0", "--log_every", "1"]

STEP_LINE = re.compile(r"^step:(\d+)/(\d+) train_loss:(\S+) ")
SEPARATOR = "=" * 100


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Small train / valid / test shards. 40 train sequences of up to 400 residues: a pass is ~4 steps, so runs
    cross pass boundaries and crop long sequences (both part of the data position a checkpoint restores)."""
    d = tmp_path_factory.mktemp("shards")
    rng = np.random.default_rng(0)
    write_sequences(d / "t_train_000000.bin", random_sequences(rng, 40, 20, 400))
    write_sequences(d / "t_valid_000000.bin", random_sequences(rng, 16, 20, 200))
    write_sequences(d / "t_test_000000.bin", random_sequences(rng, 16, 20, 200))
    return ["--train_files", str(d / "t_train_*.bin"), "--valid_files", str(d / "t_valid_*.bin"),
            "--test_files", str(d / "t_test_*.bin")]


@pytest.fixture(autouse=True)
def cpu_only_and_signal_handlers(monkeypatch):
    """CPU runs even on a GPU machine; and whatever main() does, the test process keeps its SIGINT / SIGTERM
    handlers (so Ctrl-C still stops pytest)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, h in saved.items():
        signal.signal(s, h)


def run_args(shards, tmp_path, run_id="r", out="ck", *extra):
    return [*TINY, *shards, "--log_dir", str(tmp_path / "logs"), "--out_dir", str(tmp_path / out),
            "--run_id", run_id, *[str(a) for a in extra]]


def log_lines(path):
    """Lines of a training log after the source header (which itself contains 'step:' format strings)."""
    text = Path(path).read_text()
    assert text.startswith(tp.SOURCE + SEPARATOR + "\n")
    return text[len(tp.SOURCE) + len(SEPARATOR) + 1:].splitlines()


def step_losses(lines):
    """{step: train_loss string} from 'step:K/T train_loss:X' lines."""
    out = {}
    for ln in lines:
        m = STEP_LINE.match(ln)
        if m:
            assert int(m.group(1)) not in out, f"step {m.group(1)} logged twice"
            out[int(m.group(1))] = m.group(3)
    return out


def ckpt_path(tmp_path, step, out="ck", run_id="r"):
    return tmp_path / out / run_id / f"ckpt_{step:06d}.pt"


def assert_same(a, b, where="state"):
    """Recursive bitwise equality of checkpoint contents (tensors, dicts, lists, numbers, strings)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


# ==========================================================================================================
# 1. Exact resume


def test_resume_reproduces_the_uninterrupted_run_exactly(shards, tmp_path):
    n = 3
    full = tp.main(run_args(shards, tmp_path, "r", "ckA", "--steps", 2 * n, "--save_every", n, "--eval_every", n))
    log_path = tmp_path / "logs" / "r.txt"
    full_lines = log_lines(log_path)
    full_losses = step_losses(full_lines)
    assert sorted(full_losses) == list(range(1, 2 * n + 1))
    assert len(set(full_losses.values())) > 1  # the model trains: losses change from step to step
    mid = ckpt_path(tmp_path, n, "ckA")
    assert mid.exists() and ckpt_path(tmp_path, 2 * n, "ckA").exists()

    # resume from the middle checkpoint: the config comes from the checkpoint, --out_dir from the command line
    resumed = tp.main(["--resume", str(mid), "--out_dir", str(tmp_path / "ckB")])
    lines = log_lines(log_path)  # the run id's log is appended to: one source header, then both runs
    assert Path(log_path).read_text().count(SEPARATOR + "\n") == 1
    assert lines[:len(full_lines)] == full_lines
    second = lines[len(full_lines):]
    assert f"resumed from {mid} at step {n}" in second
    config = json.loads(next(ln for ln in second if ln.startswith("config "))[len("config "):])
    assert config["resume"] == str(mid) and config["out_dir"] == str(tmp_path / "ckB")
    assert config["steps"] == 2 * n and config["run_id"] == "r" and config["model_dim"] == 32
    resumed_losses = step_losses(second)
    assert sorted(resumed_losses) == list(range(n + 1, 2 * n + 1))
    assert resumed_losses == {k: v for k, v in full_losses.items() if k > n}
    assert second[-1].startswith("RESULT ") and json.loads(second[-1][len("RESULT "):]) == resumed

    # the same result (all but wall-clock figures) ...
    clock = {"train_time_s", "tokens_per_s"}
    assert {k: v for k, v in resumed.items() if k not in clock} == {k: v for k, v in full.items() if k not in clock}
    assert resumed["val_loss"] == full["val_loss"] and resumed["test_loss"] == full["test_loss"]
    # ... the same exported weights, bit for bit ...
    a, cfg_a = tp.load_model(str(tmp_path / "ckA" / "r"))
    b, cfg_b = tp.load_model(str(tmp_path / "ckB" / "r"))
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    assert dataclasses.replace(cfg_b, out_dir="", resume="") == dataclasses.replace(cfg_a, out_dir="", resume="")
    # ... and the same final training state: weights, optimizer moments and data position (the training masks
    # are seeded per global micro-batch, so the position is all a resume needs for them)
    end_a = torch.load(ckpt_path(tmp_path, 2 * n, "ckA"), weights_only=True)
    end_b = torch.load(ckpt_path(tmp_path, 2 * n, "ckB"), weights_only=True)
    for key in ("step", "model", "optimizers", "data_positions", "tokens_seen", "padded_seen",
                "sumsq_seen", "val", "world_size", "source"):
        assert_same(end_a[key], end_b[key], key)
    # one rank; (pass, index into its permutation, next global micro-batch): 2 micro-batches per step
    [(epoch, index, g)] = end_a["data_positions"]
    assert g == 2 * 2 * n and epoch >= 1 and 0 < index <= 40  # the run crossed a pass boundary

    # --resume latest (same out_dir and run id) takes the newest checkpoint, here the final one of the full run
    more = tp.main(["--resume", "latest", "--out_dir", str(tmp_path / "ckA"), "--run_id", "r",
                    "--steps", str(2 * n + 2)])
    third = log_lines(log_path)[len(lines):]
    assert f"resumed from {ckpt_path(tmp_path, 2 * n, 'ckA')} at step {2 * n}" in third
    assert sorted(step_losses(third)) == [2 * n + 1, 2 * n + 2]
    assert more["steps"] == 2 * n + 2 and more["tokens"] > full["tokens"]


# ==========================================================================================================
# 2. Crash-safe checkpoints


def test_truncated_checkpoint_is_skipped_and_explicit_path_refused(shards, tmp_path, capsys):
    tp.main(run_args(shards, tmp_path, "r", "ck", "--steps", 4, "--save_every", 2))
    run_dir = tmp_path / "ck" / "r"
    # save_checkpoint leaves no temporary file behind
    assert sorted(p.name for p in run_dir.iterdir()) == ["ckpt_000002.pt", "ckpt_000004.pt", "config.json",
                                                          "model.safetensors"]
    good, bad = ckpt_path(tmp_path, 2), ckpt_path(tmp_path, 4)
    state, path = tp.load_checkpoint("latest", str(tmp_path / "ck"), "r")
    assert path == str(bad) and state["step"] == 4

    # a crash outside save_checkpoint (e.g. a copy cut short) leaves a truncated newest file
    data = bad.read_bytes()
    bad.write_bytes(data[:len(data) // 2])
    newest = time.time() + 10
    os.utime(bad, (newest, newest))
    capsys.readouterr()
    for run_id in ("r", ""):  # this run's checkpoints, or those of any run under out_dir
        state, path = tp.load_checkpoint("latest", str(tmp_path / "ck"), run_id)
        assert path == str(good) and state["step"] == 2 and state["config"]["run_id"] == "r"
        err = capsys.readouterr().err
        assert "skipping unreadable checkpoint" in err and str(bad) in err
    with pytest.raises(FileNotFoundError, match=re.escape(str(bad))):
        tp.load_checkpoint(str(bad), str(tmp_path / "ck"))
    with pytest.raises(FileNotFoundError, match=re.escape(str(bad))):
        tp.load_model(str(bad))
    # latest picks by modification time, not by name
    os.utime(good, (newest + 10, newest + 10))
    bad.write_bytes(data)
    os.utime(bad, (newest, newest))
    assert tp.load_checkpoint("latest", str(tmp_path / "ck"), "r")[1] == str(good)
    # nothing readable at all
    good.write_bytes(b"")
    bad.write_bytes(data[:100])
    with pytest.raises(FileNotFoundError, match="no readable checkpoint"):
        tp.load_checkpoint("latest", str(tmp_path / "ck"), "r")
    with pytest.raises(FileNotFoundError, match="no readable checkpoint"):
        tp.load_checkpoint("latest", str(tmp_path / "nothing_here"))


def test_save_checkpoint_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "deep" / "dir" / "ckpt_000001.pt"
    first = dict(step=1, w=torch.arange(5.0), nested=dict(a=[1, 2], s="x"))
    tp.save_checkpoint(str(path), first)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # directories made, no temporary left
    assert_same(tp.load_checkpoint(str(path), "")[0], first)

    # a write that dies half-way never touches the existing file at that path
    real_save = torch.save

    def dying_save(obj, f, *a, **k):
        real_save(obj, f, *a, **k)
        with open(f, "r+b") as fh:
            fh.truncate(os.path.getsize(f) // 2)
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(OSError, match="disk full"):
        tp.save_checkpoint(str(path), dict(step=2, w=torch.zeros(1000)))
    monkeypatch.undo()
    assert_same(tp.load_checkpoint(str(path), "")[0], first)
    state, found = tp.load_checkpoint("latest", str(tmp_path / "deep"))  # the temporary is no ckpt_*.pt
    assert found == str(path) and state["step"] == 1


# ==========================================================================================================
# 3. SIGTERM / SIGINT


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_cleanly_with_a_loadable_checkpoint(shards, tmp_path, sig):
    run_id = f"sig{sig.name}"
    args = run_args(shards, tmp_path, run_id, "ck", "--steps", 100000, "--save_every", 0)
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1")
    log_path = tmp_path / "logs" / f"{run_id}.txt"
    out_path = tmp_path / "stdout.txt"
    with open(out_path, "w") as out:
        proc = subprocess.Popen([sys.executable, "train_plm.py", *args], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 120
            while time.time() < deadline and proc.poll() is None:
                if log_path.exists() and len(step_losses(log_path.read_text().splitlines())) >= 3:
                    break
                time.sleep(0.1)
            assert proc.poll() is None, f"the run ended early:\n{out_path.read_text()}"
            assert len(step_losses(log_path.read_text().splitlines())) >= 3, "no training steps within 120 s"
            proc.send_signal(sig)
            rc = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    stdout = out_path.read_text()
    assert rc == tp.STOPPED_EXIT, stdout  # 75: a scheduler sees an unfinished run
    m = re.search(rf"{sig.name}: stopped after step (\d+); continue with: python train_plm.py --resume (\S+)",
                  stdout)
    assert m, stdout
    step = int(m.group(1))
    lines = log_lines(log_path)
    losses = step_losses(lines)
    assert max(losses) == step and sorted(losses) == list(range(1, step + 1))
    assert "RESULT" not in stdout
    ckpts = sorted((tmp_path / "ck" / run_id).glob("ckpt_*.pt"))
    assert [str(p) for p in ckpts] == [m.group(2)] == [str(ckpt_path(tmp_path, step, "ck", run_id))]
    state, _ = tp.load_checkpoint(m.group(2), "")
    assert state["step"] == step and state["config"]["steps"] == 100000 and state["val"] is None
    assert state["tokens_seen"] > 0 and state["world_size"] == 1
    assert not (tmp_path / "ck" / run_id / "model.safetensors").exists()  # no export: the run did not finish

    # the checkpoint resumes (in-process) and runs to the end
    result = tp.main(["--resume", m.group(2), "--steps", str(step + 2)])
    assert result["steps"] == step + 2 and np.isfinite(result["val_loss"])
    more = log_lines(log_path)[len(lines):]
    assert sorted(step_losses(more)) == [step + 1, step + 2]
    assert more[-1].startswith("RESULT ") and json.loads(more[-1][len("RESULT "):]) == result
    assert (tmp_path / "ck" / run_id / "model.safetensors").exists()


# ==========================================================================================================
# 4. Export


def test_export_then_load_gives_identical_logits(shards, tmp_path):
    tp.main(run_args(shards, tmp_path, "r", "ck", "--steps", 3, "--save_every", 3))
    folder, ckpt = tmp_path / "ck" / "r", ckpt_path(tmp_path, 3)
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
    state = torch.load(ckpt, weights_only=True)
    assert json.loads((folder / "config.json").read_text()) == state["config"]

    from_dir, cfg_dir = tp.load_model(str(folder))
    from_pt, cfg_pt = tp.load_model(str(ckpt))  # a training checkpoint loads too
    assert cfg_dir == cfg_pt == tp.Config(**state["config"])
    assert not from_dir.training and not from_pt.training
    from safetensors.torch import load_file
    exported = load_file(str(folder / "model.safetensors"))
    assert exported.keys() == state["model"].keys() == from_dir.state_dict().keys()
    for k, v in exported.items():
        assert v.dtype == torch.float32 and torch.equal(v, state["model"][k]), k

    cfg = cfg_dir
    batches, _ = tp.eval_batches(tp.resolve_files(shards[3], "valid"), cfg)
    tokens, starts = torch.from_numpy(batches[0][0]).long(), torch.from_numpy(batches[0][1])
    assert starts.sum() > 2  # several sequences packed in the row
    with torch.no_grad():
        ref = from_pt(tokens, starts)
        torch.testing.assert_close(from_dir(tokens, starts), ref, atol=0, rtol=0)

    # a perturbed model (every weight random, incl. the zero-initialised ones) round-trips exactly as well
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in from_pt.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    out = tmp_path / "export2"
    assert tp.export_model(from_pt, cfg, str(out)) == str(out)
    back, back_cfg = tp.load_model(str(out))
    assert back_cfg == cfg
    with torch.no_grad():
        perturbed = from_pt(tokens, starts)
        assert not torch.equal(perturbed, ref)
        torch.testing.assert_close(back(tokens, starts), perturbed, atol=0, rtol=0)


# ==========================================================================================================
# 5. A checkpoint of another model


@pytest.mark.parametrize("change", [["--model_dim", "64"], ["--num_layers", "4"], ["--mlp_dim", "32"]])
def test_checkpoint_of_another_model_is_refused(shards, tmp_path, change):
    tp.main(run_args(shards, tmp_path, "r", "ck", "--steps", 2, "--save_every", 2))
    ckpt = ckpt_path(tmp_path, 2)
    log = tmp_path / "logs" / "r.txt"
    size = log.stat().st_size
    with pytest.raises(SystemExit) as e:
        tp.main(["--resume", str(ckpt), *change, "--out_dir", str(tmp_path / "ck2")])
    msg = str(e.value.code)
    assert "refusing to resume" in msg and str(ckpt) in msg
    assert f"'{change[0][2:]}': {getattr(tp.parse_config(TINY, has_gpu=False), change[0][2:])}" in msg
    assert log.stat().st_size == size and not (tmp_path / "ck2").exists()  # refused before anything was written


def test_a_file_that_is_not_a_training_checkpoint_is_refused(shards, tmp_path):
    """--resume with a readable file that is not a ckpt_*.pt (a user's own torch.save, an exported model's
    weights): one line naming the file and what is missing, no traceback, nothing written."""
    tp.main(run_args(shards, tmp_path, "r", "ck", "--steps", 2))  # exports ck/r/model.safetensors
    other = tmp_path / "other.pt"
    torch.save({"a": 1}, other)
    for path in (other, tmp_path / "ck" / "r" / "model.safetensors"):
        with pytest.raises(tp.Refusal) as e:
            tp.main(["--resume", str(path), "--out_dir", str(tmp_path / "ck2")])
        msg = str(e.value)
        assert msg.startswith(str(path)) and ("not a training checkpoint" in msg or "not a readable" in msg), msg
        assert not (tmp_path / "ck2").exists()


# ==========================================================================================================
# 6. Weights & Biases, offline

_LOG_BLOCK, _LOG_HEADER = 32768, 7


def read_wandb_records(path):
    """Records of a .wandb transaction log (wandb 0.31 has no Python reader: the Go core writes it). The format is
    LevelDB's log: a 7-byte file header (':W&B', magic 0xBEE1, version 0), then 32 KiB blocks of chunks, each a
    header (crc32 of type byte + data, uint16 length, uint8 type: 1 full, 2 first, 3 middle, 4 last) and data;
    a block tail shorter than a header is zero padding. Each record is a wandb.proto Record message."""
    from wandb.proto import wandb_internal_pb2 as pb
    buf = Path(path).read_bytes()
    ident, magic, version = struct.unpack("<4sHB", buf[:_LOG_HEADER])
    assert (ident, magic, version) == (b":W&B", 0xBEE1, 0), (ident, magic, version)
    pos, pending, records = _LOG_HEADER, b"", []
    while pos + _LOG_HEADER <= len(buf):
        left = _LOG_BLOCK - pos % _LOG_BLOCK
        if left < _LOG_HEADER:
            pos += left
            continue
        crc, n, kind = struct.unpack("<IHB", buf[pos:pos + _LOG_HEADER])
        data = buf[pos + _LOG_HEADER:pos + _LOG_HEADER + n]
        pos += _LOG_HEADER + n
        if (crc, n, kind) == (0, 0, 0):
            break  # preallocated / padded tail
        assert zlib.crc32(data, zlib.crc32(bytes([kind]))) == crc, f"corrupt chunk before offset {pos}"
        if kind == 1:
            records.append(data)
        elif kind == 2:
            pending = data
        elif kind == 3:
            pending += data
        elif kind == 4:
            records.append(pending + data)
    out = []
    for data in records:
        r = pb.Record()
        r.ParseFromString(data)
        out.append(r)
    return out


def wandb_run_contents(run_dir):
    """(config, final summary, history rows by step, saved file names, run record) of an offline run."""
    config, summary, history, files, run = {}, {}, {}, [], None
    path = next(Path(run_dir).glob("run-*.wandb"))
    for _ in range(60):  # wandb's core process writes the file: wait (up to 30 s) for its exit record
        try:
            if any(r.WhichOneof("record_type") == "exit" for r in read_wandb_records(path)):
                break
        except (AssertionError, struct.error):  # a chunk half written
            pass
        time.sleep(0.5)
    for r in read_wandb_records(path):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            run = r.run
            config.update({u.key: json.loads(u.value_json) for u in r.run.config.update})
        elif kind == "config":
            config.update({u.key: json.loads(u.value_json) for u in r.config.update})
        elif kind == "summary":
            for u in r.summary.update:
                keys = list(u.nested_key) or [u.key]
                d = summary
                for k in keys[:-1]:
                    d = d.setdefault(k, {})
                d[keys[-1]] = json.loads(u.value_json)
        elif kind == "history":
            row = {(list(i.nested_key) or [i.key])[-1]: json.loads(i.value_json) for i in r.history.item}
            history.setdefault(row["_step"], {}).update(row)
        elif kind == "files":
            files += [f.path for f in r.files.files]
    return config, summary, history, files, run


def wandb_env(monkeypatch, root):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for var, sub in (("WANDB_DIR", "wandb_dir"), ("WANDB_CACHE_DIR", "wandb_cache"),
                     ("WANDB_CONFIG_DIR", "wandb_config"), ("WANDB_DATA_DIR", "wandb_data")):
        (root / sub).mkdir()
        monkeypatch.setenv(var, str(root / sub))


@pytest.fixture
def wandb_teardown():
    """Stop wandb's service process after the test, so the next test starts one with its own environment."""
    import wandb
    yield
    wandb.teardown()


def test_wandb_offline_run_records_config_and_metrics(shards, tmp_path, monkeypatch, wandb_teardown):
    wandb_env(monkeypatch, tmp_path)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)  # offline needs no key
    steps = 4
    args = run_args(shards, tmp_path, "wb1", "ck", "--steps", steps, "--eval_every", 2, "--wandb", "true",
                    "--wandb_project", "plm-tests")
    result = tp.main(args)
    log_path = tmp_path / "logs" / "wb1.txt"
    losses = step_losses(log_lines(log_path))

    runs = list((tmp_path / "logs" / "wandb").glob("offline-run-*-wb1"))  # wandb.init(dir=log_dir)
    assert len(runs) == 1, list((tmp_path / "logs").rglob("*"))
    config, summary, history, files, run = wandb_run_contents(runs[0])
    assert run.run_id == "wb1" and run.project == "plm-tests" and run.display_name == "wb1"

    # the config is the run's resolved settings
    expected = dataclasses.asdict(tp.parse_config(args, has_gpu=False))
    assert {k: config[k] for k in expected} == expected
    # the summary holds the last train loss and the final validation and test metrics of the RESULT
    assert f"{summary['train_loss']:.4f}" == losses[steps]
    assert summary["val_loss"] == pytest.approx(result["val_loss"], abs=6e-6)
    assert summary["val_perplexity"] == pytest.approx(result["val_perplexity"], abs=6e-5)
    assert summary["val_accuracy"] == pytest.approx(result["val_accuracy"], abs=6e-6)
    assert summary["test_loss"] == pytest.approx(result["test_loss"], abs=6e-6)
    assert summary["_step"] == steps
    # the history has every logged step's train loss (as in the log) and the evaluations at steps 2 and 4
    assert sorted(s for s, row in history.items() if "train_loss" in row) == list(range(1, steps + 1))
    assert {s: f"{history[s]['train_loss']:.4f}" for s in range(1, steps + 1)} == losses
    assert sorted(s for s, row in history.items() if "val_loss" in row) == [2, 4]
    assert [s for s, row in history.items() if "test_loss" in row] == [steps]
    assert history[steps]["test_loss"] == summary["test_loss"]
    # the log file is saved with the run
    assert "wb1.txt" in files
    saved = runs[0] / "files" / "wb1.txt"
    assert saved.read_text() == log_path.read_text()
    # where wandb writes them (online runs, other versions), the summary and config files agree
    if (runs[0] / "files" / "wandb-summary.json").exists():
        js = json.loads((runs[0] / "files" / "wandb-summary.json").read_text())
        assert js["val_loss"] == summary["val_loss"] and js["test_loss"] == summary["test_loss"]


# ==========================================================================================================
# 7. No secrets in flags or files


@pytest.mark.parametrize("flag", ["--hf_token", "--wandb_api_key", "--token", "--api_key", "--hub_token"])
def test_no_flag_takes_a_secret(flag, capsys):
    with pytest.raises(SystemExit) as e:
        tp.parse_config([flag, "x"], has_gpu=False)
    assert e.value.code == 2 and flag in capsys.readouterr().err


def test_no_config_field_holds_a_secret():
    secretish = {"token", "key", "secret", "password", "passwd", "api", "apikey", "credential", "auth"}
    for f in dataclasses.fields(tp.Config):
        assert not secretish & set(f.name.lower().split("_")), f.name  # 'tokens_per_step' is fine


def test_secrets_from_the_environment_reach_no_file(shards, tmp_path, monkeypatch, capfd, wandb_teardown):
    secrets = [b"hf_SECRET123", b"wandbSECRET456"]
    monkeypatch.setenv("HF_TOKEN", secrets[0].decode())
    monkeypatch.setenv("WANDB_API_KEY", secrets[1].decode())
    wandb_env(monkeypatch, tmp_path)
    tp.main(run_args(shards, tmp_path, "sec", "ck", "--steps", 2, "--save_every", 1, "--wandb", "true"))
    seen = []
    for dirpath, _, names in os.walk(tmp_path):
        for name in names:
            p = Path(dirpath, name)
            if p.is_file():
                data = p.read_bytes()
                seen.append(p.relative_to(tmp_path).as_posix())
                for s in secrets:
                    assert s not in data, f"{s!r} found in {p}"
    # the scan covered the log, both checkpoints, the export and the wandb run
    for must in ("logs/sec.txt", "ck/sec/ckpt_000001.pt", "ck/sec/ckpt_000002.pt", "ck/sec/model.safetensors",
                 "ck/sec/config.json"):
        assert must in seen, seen
    assert any(s.startswith("logs/wandb/offline-run-") and s.endswith(".wandb") for s in seen), seen
    out = capfd.readouterr()
    for s in secrets:
        assert s.decode() not in out.out + out.err


# ==========================================================================================================
# 8. Hub upload


@pytest.mark.parametrize("value", [None, ""])
def test_hub_repo_without_hf_token_exits_early(shards, tmp_path, monkeypatch, value):
    if value is None:
        monkeypatch.delenv("HF_TOKEN", raising=False)
    else:
        monkeypatch.setenv("HF_TOKEN", value)
    with pytest.raises(SystemExit) as e:
        tp.main(run_args(shards, tmp_path, "hub", "ck", "--steps", 2, "--hub_repo", "someone/plm"))
    assert "HF_TOKEN" in str(e.value.code)
    assert not (tmp_path / "logs").exists() and not (tmp_path / "ck").exists()  # before any work or file


def test_hub_upload_uses_the_token_from_the_environment(shards, tmp_path, monkeypatch):
    import huggingface_hub
    calls = []

    class FakeApi:
        def __init__(self, token=None):
            calls.append(("init", token))

        def create_repo(self, repo_id, exist_ok=False, **kw):
            calls.append(("create_repo", repo_id, exist_ok))

        def upload_folder(self, folder_path, repo_id, allow_patterns=None, **kw):
            calls.append(("upload_folder", folder_path, repo_id, sorted(os.listdir(folder_path)), allow_patterns))

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setenv("HF_TOKEN", "hf_SECRET123")
    tp.main(run_args(shards, tmp_path, "hub", "ck", "--steps", 2, "--hub_repo", "someone/plm"))
    folder = str(tmp_path / "ck" / "hub")
    assert calls == [("init", "hf_SECRET123"), ("create_repo", "someone/plm", True),
                     ("upload_folder", folder, "someone/plm", ["config.json", "model.safetensors"],
                      ["*.safetensors", "*.json"])]
    log = (tmp_path / "logs" / "hub.txt").read_text()
    assert "uploaded to https://huggingface.co/someone/plm" in log and "hf_SECRET123" not in log


# ==========================================================================================================
# 9. Non-finite loss


def nan_after(monkeypatch, first_bad_call):
    """Make the training loss NaN from the first_bad_call-th training forward on (1-based); the NaN
    gradients then poison the weights, as a real divergence would."""
    real_forward = tp.ProteinLM.forward
    calls = [0]

    def forward(self, tokens, starts, labels=None, *rest):
        out = real_forward(self, tokens, starts, labels, *rest)
        if labels is not None:
            calls[0] += 1
            if calls[0] >= first_bad_call:
                out = out * float("nan")
        return out

    monkeypatch.setattr(tp.ProteinLM, "forward", forward)


@pytest.mark.parametrize("first_bad_step, last_good", [(3, 2), (1, None)])
def test_non_finite_loss_stops_the_run(shards, tmp_path, monkeypatch, first_bad_step, last_good):
    nan_after(monkeypatch, 2 * (first_bad_step - 1) + 1)  # 2 micro-batches per step
    with pytest.raises(SystemExit) as e:
        tp.main(run_args(shards, tmp_path, "nan", "ck", "--steps", 8, "--save_every", 2, "--log_every", 2))
    msg = str(e.value.code)
    assert "non-finite" in msg
    stop = 4 if last_good else 2  # detected at the first log step at or after the bad step
    assert f"in steps {stop - 1}-{stop} " in msg
    ckpts = sorted((tmp_path / "ck" / "nan").glob("ckpt_*.pt")) if (tmp_path / "ck" / "nan").exists() else []
    if last_good is None:
        assert "last good checkpoint: none" in msg and ckpts == []
    else:
        good = ckpt_path(tmp_path, last_good, "ck", "nan")
        assert f"last good checkpoint: {good}" in msg
        assert ckpts == [good]  # nothing written after the divergence
        state, _ = tp.load_checkpoint(str(good), "")
        assert state["step"] == last_good
        assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert not (tmp_path / "ck" / "nan" / "model.safetensors").exists()


# Regression tests for bugs found in review (each was a strict xfail until fixed).


def test_signal_handlers_are_restored_when_main_raises(shards, tmp_path, monkeypatch):
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    nan_after(monkeypatch, 1)
    with pytest.raises(SystemExit):
        tp.main(run_args(shards, tmp_path, "nan", "ck", "--steps", 4, "--log_every", 2))
    assert {s: signal.getsignal(s) for s in before} == before


@pytest.mark.parametrize("first_bad_step", [1, 2])
def test_last_good_checkpoint_is_finite_when_saving_between_log_steps(shards, tmp_path, monkeypatch, first_bad_step):
    nan_after(monkeypatch, 2 * (first_bad_step - 1) + 1)  # 2 micro-batches per step
    with pytest.raises(SystemExit) as e:
        tp.main(run_args(shards, tmp_path, "nan", "ck", "--steps", 4, "--save_every", 1, "--log_every", 2))
    m = re.search(r"last good checkpoint: (\S+)\. ", str(e.value.code))
    ckpts = sorted((tmp_path / "ck" / "nan").glob("ckpt_*.pt")) if (tmp_path / "ck" / "nan").exists() else []
    if first_bad_step == 1:  # step 1's checkpoint is checked before it is written: nothing is written
        assert m.group(1) == "none" and ckpts == []
    else:
        assert m.group(1) == str(ckpt_path(tmp_path, 1, "ck", "nan")) and ckpts == [Path(m.group(1))]
        state, _ = tp.load_checkpoint(m.group(1), "")
        assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_learning_rate_flags_apply_on_resume(shards, tmp_path):
    tp.main(run_args(shards, tmp_path, "r", "ck", "--steps", 4, "--save_every", 2))
    ckpt = ckpt_path(tmp_path, 2)
    tp.main(["--resume", str(ckpt), "--out_dir", str(tmp_path / "ck0"), "--lr_hidden", "0", "--lr_embed", "0",
             "--lr_head", "0", "--lr_scalar", "0"])
    before = torch.load(ckpt, weights_only=True)["model"]
    after = torch.load(ckpt_path(tmp_path, 4, "ck0"), weights_only=True)
    assert after["config"]["lr_hidden"] == 0.0
    for k in before:  # learning rate 0: not one weight may move
        assert torch.equal(before[k], after["model"][k]), k


def test_resume_at_the_final_step_without_a_prior_evaluation(shards, tmp_path):
    tp.main(run_args(shards, tmp_path, "r", "ck", "--steps", 4, "--save_every", 2))
    result = tp.main(["--resume", str(ckpt_path(tmp_path, 2)), "--steps", "2", "--out_dir", str(tmp_path / "ck2")])
    assert result["steps"] == 2 and np.isfinite(result["val_loss"])
