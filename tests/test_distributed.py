"""CPU tests of data-parallel training, with 2 processes on gloo: 2 ranks x 1 micro-batch train exactly like 1 rank
x 2 micro-batches (weights, train losses, RESULT, checkpoints), the sharded Muon equals the 1-rank one (and its
gathered state dict is complete), a 2-rank checkpoint resumes exactly, and ranks never hang when a pass over the
data does not split evenly between them. (The loader's split and the distributed evaluation:
tests/test_train_plm.py.)

Run: python -m pytest -q tests/test_distributed.py      (CPU only; about 15 s on 2 cores)
Needs: torch, numpy, pytest, safetensors.
"""
import copy
import json
import os
import re
import socket
import threading
import time
import traceback
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import train_plm as tp
from conftest import random_sequences, write_sequences

torch.set_num_threads(1)  # see tests/test_train_plm.py: tiny models, 2 cores, bit-reproducible

# 2 ranks x 1 micro-batch of 512 tokens, or 1 rank x 2: the same tokens_per_step
TINY = ["--preset", "cpu", "--seed", "0", "--num_layers", "2", "--model_dim", "64", "--num_heads", "2",
        "--mlp_dim", "128", "--tokens_per_micro_batch", "512", "--tokens_per_step", "1024", "--max_length", "128",
        "--warmup_steps", "1", "--muon_momentum_warmup_steps", "3", "--eval_every", "0", "--log_every", "1"]
CLOCKS = {"train_time_s", "tokens_per_s"}  # RESULT fields that are wall-clock measurements
STEP_LINE = re.compile(r"^step:(\d+)/\d+ train_loss:(\S+) ")


# ----------------------------------------------------------------------------------------------------------
# Helpers


def _free_ports(n):
    """n distinct free TCP ports on 127.0.0.1 (for MASTER_PORT)."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _spawn(fn, *args, timeout=120, nprocs=2):
    """Run fn(rank, nprocs, *args) in nprocs spawned processes; fail on a crash, or after timeout seconds (a
    hang)."""
    ctx = mp.start_processes(fn, args=(nprocs, *args), nprocs=nprocs, join=False, start_method="spawn")
    deadline = time.time() + timeout
    try:
        while not ctx.join(timeout=1):
            assert time.time() < deadline, f"2 ranks still running after {timeout} s: a hang"
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.terminate()


def _train_worker(rank, world_size, runs, out_dir):
    """One rank (spawned): train(argv) for each (port, argv) of runs in turn, as torchrun would start it;
    writes each RESULT to out_dir/run{k}_rank{rank}.json."""
    torch.set_num_threads(1)
    torch.cuda.is_available = lambda: False  # gloo on CPU, even on a GPU machine

    def die(hook):  # a crashed loader thread leaves this rank waiting forever: fail at once instead
        traceback.print_exception(hook.exc_type, hook.exc_value, hook.exc_traceback)
        os._exit(3)

    threading.excepthook = die
    for k, (port, argv) in enumerate(runs):
        os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                          MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        result = tp.train(argv)
        Path(out_dir, f"run{k}_rank{rank}.json").write_text(json.dumps(result))


def _one_rank(argv):
    """train(argv) in this process on the CPU, as a single rank."""
    with pytest.MonkeyPatch.context() as mpatch:
        mpatch.setattr(torch.cuda, "is_available", lambda: False)
        return tp.main(argv)


def _losses(log_path):
    """[{step: train_loss}] per run in a log (a resumed run appends to its run id's log)."""
    runs = [{}]
    for ln in Path(log_path).read_text()[len(tp.SOURCE):].splitlines():
        m = STEP_LINE.match(ln)
        if m:
            runs[-1][int(m.group(1))] = float(m.group(2))
        elif ln.startswith("RESULT "):
            runs.append({})
    return runs[:-1]


def _weights(folder):
    from safetensors.torch import load_file
    return load_file(str(Path(folder) / "model.safetensors"))


def _assert_tree(a, b, where="state", **tol):
    """Recursive equality of checkpoint contents; tensors bitwise, or within tol (assert_close) when given."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        if tol:
            torch.testing.assert_close(a, b, **tol, msg=where)
        else:
            assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), (where, sorted(a), sorted(b))
        for k in a:
            _assert_tree(a[k], b[k], f"{where}[{k!r}]", **tol)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_tree(x, y, f"{where}[{i}]", **tol)
    else:
        assert a == b, (where, a, b)


def _same_result(a, b, ignore=(), approx=0.0):
    """RESULT dicts equal but for `ignore` and the clocks; floats within `approx`."""
    skip = CLOCKS | set(ignore)
    assert a.keys() == b.keys()
    for k in a.keys() - skip:
        if approx and isinstance(a[k], float):
            assert a[k] == pytest.approx(b[k], abs=approx), k
        else:
            assert a[k] == b[k], k


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Small shards. train: 40 sequences, 10 micro-batches of 512 tokens a pass (even); odd_train: 9 sequences
    of 130-200 residues, cropped to 128: 3 micro-batches a pass (4 + 4 + 1, odd)."""
    d = tmp_path_factory.mktemp("dist_shards")
    rng = np.random.default_rng(0)
    write_sequences(d / "t_train_000000.bin", random_sequences(rng, 40, 20, 400))
    write_sequences(d / "t_valid_000000.bin", random_sequences(rng, 16, 20, 200))
    write_sequences(d / "t_test_000000.bin", random_sequences(rng, 16, 20, 200))
    write_sequences(d / "odd_train_000000.bin", random_sequences(rng, 9, 130, 200))
    return d


def _args(d, tmp_path, run_id, out, train="t_train", *extra):
    return [*TINY, "--train_files", str(d / f"{train}_*.bin"), "--valid_files", str(d / "t_valid_*.bin"),
            "--test_files", str(d / "t_test_*.bin"), "--log_dir", str(tmp_path / "logs"),
            "--out_dir", str(tmp_path / out), "--run_id", run_id, *[str(a) for a in extra]]


def _pass_sizes(d, train, passes):
    """Micro-batches in each of the first `passes` passes of the 1-rank stream (TINY's packing)."""
    cfg = tp.parse_config(TINY, has_gpu=False)
    paths = [str(d / f"{train}_000000.bin")]
    sizes, n_seqs = [0] * passes, len(tp.index_sequences(paths)[1])
    for *_, position in tp.PackedLoader(paths, cfg, 0, 1, torch.device("cpu"), 0).batches():
        sizes[position[0]] += 1
        if position[:2] == (passes - 1, n_seqs):
            return sizes


# ----------------------------------------------------------------------------------------------------------
# 2 ranks == 1 rank with twice the gradient accumulation; a 2-rank checkpoint resumes exactly


@pytest.fixture(scope="module")
def runs(shards, tmp_path_factory):
    """Run A: 2 ranks, 6 steps, checkpoints at 3 and 6; run B: 2 ranks resuming A at step 3; run C: 1 rank
    with A's flags. 10 micro-batches a pass = 5 steps: B crosses a pass boundary."""
    tmp = tmp_path_factory.mktemp("dist_runs")
    a = _args(shards, tmp, "r2", "ckA", "t_train", "--steps", 6, "--save_every", 3)
    b = ["--resume", str(tmp / "ckA" / "r2" / "ckpt_000003.pt"), "--out_dir", str(tmp / "ckB")]
    p0, p1 = _free_ports(2)
    _spawn(_train_worker, [(p0, a), (p1, b)], str(tmp))
    one = _one_rank(_args(shards, tmp, "r1", "ckC", "t_train", "--steps", 6, "--save_every", 3))
    res = {name: [json.loads((tmp / f"run{k}_rank{r}.json").read_text()) for r in range(2)]
           for k, name in enumerate("AB")}
    return tmp, res, one


def test_two_ranks_train_exactly_like_one_rank_with_twice_the_accumulation(runs, shards):
    tmp, res, one = runs
    assert _pass_sizes(shards, "t_train", 2) == [10, 10]  # the premise of the fixture's docstring
    (a0, a1) = res["A"]
    _same_result(a0, a1)  # every rank reports the same
    assert a0["world_size"] == 2 and one["world_size"] == 1 and a0["steps"] == one["steps"] == 6
    _same_result(a0, one, ignore={"world_size", "run_id"}, approx=2e-5)
    assert a0["tokens"] == one["tokens"] > 6 * 700  # real tokens of both ranks, counted once
    # the train loss of each step: the mean over both ranks' micro-batches == over the 1 rank's two
    [two_losses, _], [one_losses] = _losses(tmp / "logs" / "r2.txt"), _losses(tmp / "logs" / "r1.txt")
    assert sorted(two_losses) == sorted(one_losses) == list(range(1, 7))
    assert two_losses == pytest.approx(one_losses, abs=1.5e-4)
    assert len(set(one_losses.values())) > 1
    # the exported weights: equal, and trained (not the initial ones)
    w2, w1 = _weights(tmp / "ckA" / "r2"), _weights(tmp / "ckC" / "r1")
    assert w2.keys() == w1.keys()
    for k in w1:  # the same bits (tree_sum's order; deterministic kernels)
        assert torch.equal(w2[k], w1[k]), k
    assert a0["weights_sha256"] == one["weights_sha256"]
    torch.manual_seed(0)
    init = tp.ProteinLM(tp.parse_config(TINY, has_gpu=False)).state_dict()
    assert sum(not torch.allclose(init[k].float(), w1[k]) for k in w1) >= len(w1) // 2
    # the step-3 checkpoints: same weights, Adam and Muon state (the 2-rank Muon state gathered from both
    # ranks: a momentum buffer for every matrix), data position and token counts
    c2, c1 = (torch.load(tmp / ck / r / "ckpt_000003.pt", weights_only=True) for ck, r in (("ckA", "r2"),
                                                                                            ("ckC", "r1")))
    assert (c2["world_size"], c1["world_size"]) == (2, 1)
    _assert_tree(c2["model"], c1["model"], "model")
    _assert_tree(c2["optimizers"], c1["optimizers"], "optimizers")
    n_muon = len(c1["optimizers"][1]["param_groups"][0]["params"])
    assert n_muon == 8 and sorted(c2["optimizers"][1]["state"]) == list(range(n_muon))
    assert c2["data_positions"] == c1["data_positions"] * 2 and c1["data_positions"][0][2] == 6
    for k in ("tokens_seen", "padded_seen", "sumsq_seen"):
        assert c2[k] == c1[k], k


def test_a_two_rank_checkpoint_resumes_exactly_with_two_ranks(runs):
    tmp, res, _ = runs
    (a0, _), (b0, b1) = res["A"], res["B"]
    _same_result(b0, b1)
    _same_result(a0, b0)
    # the resumed run logs steps 4-6 with the uninterrupted run's losses
    full, resumed = _losses(tmp / "logs" / "r2.txt")
    assert sorted(resumed) == [4, 5, 6] and resumed == {s: v for s, v in full.items() if s > 3}
    wa, wb = _weights(tmp / "ckA" / "r2"), _weights(tmp / "ckB" / "r2")
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    end_a, end_b = (torch.load(tmp / ck / "r2" / "ckpt_000006.pt", weights_only=True) for ck in ("ckA", "ckB"))
    for key in ("step", "model", "optimizers", "data_positions", "tokens_seen", "padded_seen", "sumsq_seen",
                "val", "world_size"):
        _assert_tree(end_a[key], end_b[key], key)
    mid = torch.load(tmp / "ckA" / "r2" / "ckpt_000003.pt", weights_only=True)
    assert mid["data_positions"][0][0] == 0 and end_a["data_positions"][0][0] == 1  # a pass boundary between


def test_a_checkpoint_resumes_on_another_number_of_ranks(runs, tmp_path):
    """A checkpoint is written at a step boundary, where all ranks stand at one place in the global stream:
    1 rank resumes the 2-rank run's step-3 checkpoint, and 2 ranks the 1-rank run's, and both end with the
    uninterrupted runs' bits (2 x 1 and 1 x 2 micro-batches: each rank's share is a power of two)."""
    tmp, res, one = runs
    a0 = res["A"][0]
    assert a0["weights_sha256"] == one["weights_sha256"]
    to_one = _one_rank(["--resume", str(tmp / "ckA" / "r2" / "ckpt_000003.pt"), "--out_dir", str(tmp_path / "ck21"),
                        "--run_id", "r2to1"])
    assert to_one["world_size"] == 1 and to_one["weights_sha256"] == one["weights_sha256"]
    assert "(written by 2 processes)" in (tmp / "logs" / "r2to1.txt").read_text()
    b = ["--resume", str(tmp / "ckC" / "r1" / "ckpt_000003.pt"), "--out_dir", str(tmp_path / "ck12"), "--run_id",
         "r1to2"]
    _spawn(_train_worker, [(_free_ports(1)[0], b)], str(tmp_path))
    to_two = json.loads((tmp_path / "run0_rank0.json").read_text())
    assert to_two["world_size"] == 2 and to_two["weights_sha256"] == one["weights_sha256"]
    # the resumed steps log the uninterrupted run's train losses
    [full], [resumed] = _losses(tmp / "logs" / "r1.txt"), _losses(tmp / "logs" / "r1to2.txt")
    assert sorted(resumed) == [4, 5, 6] and resumed == {s: v for s, v in full.items() if s > 3}


def test_a_checkpoint_whose_ranks_stand_at_different_places_is_refused(runs, tmp_path):
    tmp, _, _ = runs
    ckpt = torch.load(tmp / "ckA" / "r2" / "ckpt_000003.pt", weights_only=False)
    ckpt["data_positions"][1][2] += 1
    bad = tmp_path / "bad.pt"
    torch.save(ckpt, bad)
    with pytest.raises(SystemExit, match=r"bad\.pt: its ranks' data positions differ"):
        _one_rank(["--resume", str(bad), "--out_dir", str(tmp_path / "ck")])


def test_unequal_data_per_pass_does_not_hang(shards, tmp_path):
    """3 micro-batches a pass, 2 ranks: every other step's micro-batches come from two passes."""
    assert _pass_sizes(shards, "odd_train", 2) == [3, 3]
    argv = _args(shards, tmp_path, "odd2", "ck2", "odd_train", "--steps", 6)
    _spawn(_train_worker, [(_free_ports(1)[0], argv)], str(tmp_path), timeout=90)
    two = json.loads((tmp_path / "run0_rank0.json").read_text())
    one = _one_rank(_args(shards, tmp_path, "odd1", "ck1", "odd_train", "--steps", 6))
    assert two["steps"] == 6
    _same_result(two, one, ignore={"world_size", "run_id"}, approx=2e-5)
    assert two["weights_sha256"] == one["weights_sha256"]


def test_one_two_and_four_ranks_train_the_same_bits(shards, tmp_path):
    """The same global batch of 4 micro-batches as 1 rank x 4, 2 ranks x 2 and 4 ranks x 1: the gradient
    sums run in tree_sum's order, which does not depend on the split, so the weights are bitwise equal (a
    sum in arrival order, or an all-reduce's ring order, gives different last bits; over steps they grow)."""
    # 10 blocks: Muon's sets hold 2 or 1 parameters (the all-to-all pads the smaller)
    runs = {w: _args(shards, tmp_path, f"w{w}", f"ck{w}", "t_train", "--steps", 3, "--tokens_per_step", 2048,
                     "--num_layers", 10) for w in (1, 2, 4)}
    for w in (2, 4):
        (tmp_path / f"w{w}").mkdir()
        _spawn(_train_worker, [(_free_ports(1)[0], runs[w])], str(tmp_path / f"w{w}"), nprocs=w, timeout=180)
    one = _one_rank(runs[1])
    got = {w: json.loads((tmp_path / f"w{w}" / "run0_rank0.json").read_text()) for w in (2, 4)}
    assert [got[w]["world_size"] for w in (2, 4)] == [2, 4]
    assert one["weights_sha256"] == got[2]["weights_sha256"] == got[4]["weights_sha256"]
    w1, w4 = _weights(tmp_path / "ck1" / "w1"), _weights(tmp_path / "ck4" / "w4")
    for k in w1:
        assert torch.equal(w1[k], w4[k]), k


# ----------------------------------------------------------------------------------------------------------
# The sharded Muon


MUON_SHAPES = [(16, 32)] * 5 + [(32, 16), (2, 16, 32)]  # odd counts: rank 1 has nothing in the last chunk of each
MUON_OWNERS = [[0, 2, 4, 5, 6], [1, 3]]  # chunks of 2 per shape: (0, 1), (2, 3), (4,), (5,), (6,)


def _muon_params():
    g = torch.Generator().manual_seed(0)
    return [torch.nn.Parameter(torch.randn(s, generator=g)) for s in MUON_SHAPES]


def _muon_grads(step, rank):
    g = torch.Generator().manual_seed(100 * step + rank)
    return [torch.randn(s, generator=g) for s in MUON_SHAPES]


def _muon_worker(rank, world_size, store_file, out_dir):
    """One rank (spawned): 3 steps of a 2-rank Muon on this rank's gradients, its gathered state dict, and a 4th
    step of a fresh 2-rank Muon loaded from that state."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store_file}", rank=rank, world_size=world_size)
    try:
        params = _muon_params()
        muon = tp.Muon(params, lr=0.02, momentum=0.9, rank=rank, world_size=world_size)
        for step in range(3):
            for p, g in zip(params, _muon_grads(step, rank)):
                p.grad = g
            muon.step()

        def owned():
            return [i for i, p in enumerate(params) if "momentum_buffer" in muon.state.get(p, {})]

        before = owned()
        state = copy.deepcopy(muon.gathered_state_dict())  # (state dicts share the live buffers)
        after = owned()
        again = [torch.nn.Parameter(p.detach().clone()) for p in params]
        resumed = tp.Muon(again, lr=0.02, momentum=0.9, rank=rank, world_size=world_size)
        resumed.load_state_dict(copy.deepcopy(state))
        for p, g in zip(again, _muon_grads(3, rank)):
            p.grad = g
        resumed.step()
        torch.save(dict(params=[p.detach() for p in params], state=state, owned=before, owned_after=after,
                        resumed=[p.detach() for p in again]), Path(out_dir, f"muon{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_sharded_muon_equals_one_rank_and_gathers_every_momentum_buffer(tmp_path):
    _spawn(_muon_worker, str(tmp_path / "store"), str(tmp_path))
    ranks = [torch.load(tmp_path / f"muon{r}.pt", weights_only=True) for r in range(2)]
    params = _muon_params()
    init = [p.detach().clone() for p in params]
    muon = tp.Muon(params, lr=0.02, momentum=0.9)  # one rank, on the sum of both ranks' gradients

    def step(k):
        for p, a, b in zip(params, _muon_grads(k, 0), _muon_grads(k, 1)):
            p.grad = a + b
        muon.step()

    for k in range(3):
        step(k)
    assert all((p - q).abs().max() > 1e-3 for p, q in zip(params, init))
    for r, got in enumerate(ranks):
        for i, (x, p) in enumerate(zip(got["params"], params)):  # the same bits
            assert torch.equal(x, p.detach()), f"rank {r}, parameter {i}"
        # the optimizer state is sharded: a rank keeps the momentum of the matrices it owns only, also after
        # gathering the others' for a checkpoint
        assert got["owned"] == got["owned_after"] == MUON_OWNERS[r]
        want = muon.state_dict()
        assert got["state"]["param_groups"] == want["param_groups"]
        assert sorted(got["state"]["state"]) == list(range(len(MUON_SHAPES)))
        for i, st in want["state"].items():
            assert torch.equal(got["state"]["state"][i]["momentum_buffer"], st["momentum_buffer"]), f"rank {r}, buffer {i}"
    step(3)  # the 2-rank optimizer resumed from the gathered state takes the 1-rank optimizer's 4th step
    for r, got in enumerate(ranks):
        for i, (x, p) in enumerate(zip(got["resumed"], params)):
            assert torch.equal(x, p.detach()), f"rank {r}, parameter {i}"


SET_SHAPES = [(8, 16)] * 20 + [(16, 8)] * 3  # 20 matrices: sets of 3 and 2; 3: sets of 1, chunks short of ranks


def _muon_sets_worker(rank, world_size, store_file, out_dir):
    """One rank (spawned): 2 steps of a world_size-rank Muon on this rank's gradients; saves the parameters and
    the gathered state dict."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store_file}", rank=rank, world_size=world_size)
    try:
        params = _set_params()
        muon = tp.Muon(params, lr=0.02, momentum=0.9, rank=rank, world_size=world_size)
        for step in range(2):
            g = torch.Generator().manual_seed(100 * step + rank)
            for p in params:
                p.grad = torch.randn(p.shape, generator=g)
            muon.step()
        state = muon.gathered_state_dict()
        torch.save(dict(params=[p.detach() for p in params], state=state), Path(out_dir, f"sets{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("world_size", [2, 4])
def test_muon_sets_give_the_one_rank_bits_on_2_and_4_ranks(world_size, tmp_path):
    """Muon's Newton-Schulz sets (of 3 and 2 matrices here) and its tree_sum across ranks: world_size ranks give
    bitwise the parameters and momentum buffers of 1 rank whose gradient is the tree_sum of theirs."""
    sets = [len(ps) for _, shape, _, chunk in tp.Muon(_set_params(), lr=0.02).chunks() if shape == (8, 16)
            for ps in chunk]
    assert sets == [3, 3, 3, 3, 2, 2, 2, 2]  # min(MUON_SETS, 20) sets, the larger first, whatever the ranks
    shares = [0] * world_size  # and so every rank orthogonalises as many matrices
    for _, shape, _, chunk in tp.Muon(_set_params(), lr=0.02, world_size=world_size).chunks():
        for r, ps in enumerate(chunk):
            shares[r] += len(ps) if shape == (8, 16) else 0
    assert shares == [20 // world_size] * world_size
    _spawn(_muon_sets_worker, str(tmp_path / "store"), str(tmp_path), nprocs=world_size)
    params = _set_params()
    muon = tp.Muon(params, lr=0.02, momentum=0.9)
    for step in range(2):
        per_rank = []
        for rank in range(world_size):
            g = torch.Generator().manual_seed(100 * step + rank)
            per_rank.append([torch.randn(p.shape, generator=g) for p in params])
        for p, grad in zip(params, tp.tree_sum(per_rank)):
            p.grad = grad
        muon.step()
    want = muon.state_dict()["state"]
    for r in range(world_size):
        got = torch.load(tmp_path / f"sets{r}.pt", weights_only=True)
        for i, (x, p) in enumerate(zip(got["params"], params)):
            assert torch.equal(x, p.detach()), f"rank {r}, parameter {i}"
        assert sorted(got["state"]["state"]) == list(range(len(SET_SHAPES)))
        for i, st in want.items():
            assert torch.equal(got["state"]["state"][i]["momentum_buffer"], st["momentum_buffer"]), (r, i)


def _set_params():
    g = torch.Generator().manual_seed(0)
    return [torch.nn.Parameter(torch.randn(s, generator=g)) for s in SET_SHAPES]


# ----------------------------------------------------------------------------------------------------------
# SIGTERM to torchrun: the ranks agree within STOP_CHECK_EVERY steps, checkpoint, and exit 75


def test_sigterm_under_torchrun_checkpoints_and_exits_unfinished(shards, tmp_path):
    """torchrun forwards SIGTERM to both ranks; with log lines 1000 steps apart they still agree on the stop
    within STOP_CHECK_EVERY steps (not at the next log step), write one checkpoint, print a torchrun resume
    command, and end well inside torchrun's 30 s before it kills them."""
    import signal
    import subprocess
    import sys
    run_id = "term"
    args = _args(shards, tmp_path, run_id, "ck", "t_train", "--steps", 100000, "--log_every", 1000)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1")
    root = Path(tp.__file__).parent
    out_path = tmp_path / "stdout.txt"
    with open(out_path, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                                 "train_plm.py", *args], cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            log_path = tmp_path / "logs" / f"{run_id}.txt"
            deadline = time.time() + 120
            while time.time() < deadline and not (log_path.exists() and "unigram entropy" in log_path.read_text()):
                time.sleep(0.2)
            time.sleep(3)  # a few steps in
            assert proc.poll() is None, out_path.read_text()
            t = time.time()
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(timeout=60)
            stop_s = time.time() - t
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    stdout = out_path.read_text()
    m = re.search(r"SIGTERM: stopped after step (\d+); continue with: "
                  r"torchrun --standalone --nproc_per_node=2 train_plm.py "
                  r"--resume (\S+)", stdout)
    assert m, stdout
    assert int(m.group(1)) % tp.STOP_CHECK_EVERY == 0 and stop_s < 25, (m.group(1), stop_s)
    assert rc != 0  # torchrun, itself signalled, exits non-zero: the run is not reported as finished
    state, _ = tp.load_checkpoint(m.group(2), "")
    assert state["step"] == int(m.group(1)) and state["world_size"] == 2
