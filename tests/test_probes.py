"""The representation benchmark of train_plm.py: per-layer embeddings, linear probes and their metrics
(against scikit-learn / scipy), the composition baseline, the benchmark end to end on small synthetic probe
sets, and tie_embeddings (CPU).

Run: python -m pytest -q tests/test_probes.py
"""
import gzip
import math

import numpy as np
import pytest
import torch

import train_plm as tp

torch.set_num_threads(1)


def cfg_of(*argv):
    return tp.parse_config(["--preset", "cpu", *map(str, argv)], has_gpu=False)


def tiny_model(seed=0, *extra):
    torch.manual_seed(seed)
    cfg = cfg_of("--num_layers", 3, "--model_dim", 32, "--num_heads", 2, "--mlp_dim", 64, "--max_length", 64,
                 *extra)
    return tp.ProteinLM(cfg).eval()


def residues(rng, n):
    return rng.integers(4, 24, n).astype(np.uint8)


def hidden(model, seq):
    """Every layer's states of one sequence framed <cls> seq <eos>, alone: (L+1, len+2, D)."""
    tokens = torch.from_numpy(np.concatenate([[tp.CLS], seq, [tp.EOS]]).astype(np.int64))
    starts = torch.zeros(len(tokens), dtype=torch.bool)
    starts[0] = True
    return torch.stack(model.hidden_states(tokens, starts))


def test_mean_pooling_excludes_specials_and_padding_and_packing_does_not_matter():
    model = tiny_model()
    rng = np.random.default_rng(0)
    seqs = [residues(rng, n) for n in (5, 40, 17, 1, 60)]
    packed, windowed = tp.embed(model, seqs, tokens_per_batch=128)  # several batches, padding in each
    assert packed.shape == (4, 5, 32) and windowed == 0
    for i, s in enumerate(seqs):
        alone = hidden(model, s)[:, 1:-1].mean(1)  # residues only: no <cls>, <eos>, padding
        assert torch.allclose(packed[:, i], alone, atol=1e-5), i
        with_specials = hidden(model, s).mean(1)
        assert not torch.allclose(packed[:, i], with_specials, atol=1e-3)
    one, _ = tp.embed(model, [seqs[2]])
    assert torch.allclose(one[:, 0], packed[:, 2], atol=1e-5)


def test_per_residue_embeddings_and_long_sequences():
    model = tiny_model(1)
    rng = np.random.default_rng(1)
    seqs = [residues(rng, 30), residues(rng, 150), residues(rng, 9)]  # 150 > max_length - 2 = 62: windowed
    per_res, windowed = tp.embed(model, seqs, per_residue=True, tokens_per_batch=256)
    assert windowed == 1 and per_res.shape == (4, 189, 32)
    assert torch.allclose(per_res[:, :30], hidden(model, seqs[0])[:, 1:-1], atol=1e-5)
    assert torch.allclose(per_res[:, 180:], hidden(model, seqs[2])[:, 1:-1], atol=1e-5)
    # the long one: 3 windows of 50 residues, <cls> only on the first, <eos> only on the last
    long = seqs[1]
    for j, (a, b) in enumerate([(0, 50), (50, 100), (100, 150)]):
        piece = np.concatenate([[tp.CLS]] * (j == 0) + [long[a:b]] + [[tp.EOS]] * (j == 2)).astype(np.int64)
        starts = torch.zeros(len(piece), dtype=torch.bool)
        starts[0] = True
        hs = torch.stack(model.hidden_states(torch.from_numpy(piece), starts))
        first = 1 if j == 0 else 0
        assert torch.allclose(per_res[:, 30 + a:30 + b], hs[:, first:first + b - a], atol=1e-5)
    pooled, _ = tp.embed(model, seqs)
    assert torch.allclose(pooled[:, 1], per_res[:, 30:180].mean(1), atol=1e-5)  # no residue dropped


def test_metrics_match_scikit_learn_and_scipy():
    metrics = pytest.importorskip("sklearn.metrics")
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(2)
    y, pred = rng.integers(0, 5, 500), rng.integers(0, 5, 500)
    pred[:200] = y[:200]
    m = tp.probe_metrics("class", pred, y)
    assert m["mcc"] == pytest.approx(metrics.matthews_corrcoef(y, pred), abs=1e-12)
    assert m["accuracy"] == pytest.approx(metrics.accuracy_score(y, pred))
    a = np.round(rng.normal(size=300), 1)  # ties
    b = a + rng.normal(size=300)
    b[::7] = 1.0
    assert tp.spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-12)
    assert tp.probe_metrics("regression", b, a)["pearson"] == pytest.approx(stats.pearsonr(b, a).statistic)


def test_linear_probes_match_scikit_learn():
    linear = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(3)
    X = rng.normal(size=(400, 6)).astype(np.float32)
    y = np.argmax(X @ rng.normal(size=(6, 3)) + rng.normal(size=(400, 3)), 1)
    l2 = 0.01
    predict = tp.fit_linear_probe("class", torch.from_numpy(X), torch.from_numpy(y), l2, iters=500)
    ref = linear.LogisticRegression(C=1 / (l2 * len(X)), max_iter=5000, tol=1e-10).fit(X, y)
    Z = rng.normal(size=(300, 6)).astype(np.float32)
    agree = (predict(torch.from_numpy(Z)).numpy() == ref.predict(Z)).mean()
    assert agree > 0.99
    t = X @ rng.normal(size=6) + 0.1 * rng.normal(size=400)
    Xc = X - X.mean(0)  # the caller standardises: centred features
    for l2 in (1e-3, 1.0):
        predict = tp.fit_linear_probe("regression", torch.from_numpy(Xc), t, l2)
        ref = linear.Ridge(alpha=l2 * len(X)).fit(Xc, t)
        assert np.allclose(predict(torch.from_numpy(Z)), ref.predict(Z), atol=1e-5)


def test_composition_features():
    seqs = [np.array([4, 4, 5, 28], np.uint8), np.array([23], np.uint8)]
    f = tp.composition_features(seqs)
    assert f.shape == (1, 2, 25)
    assert f[0, 0, 0] == 0.5 and f[0, 0, 1] == 0.25 and f[0, 0, 24] == 0.25 and f[0, 1, 19] == 1.0
    r = tp.composition_features(seqs, per_residue=True)
    assert r.shape == (1, 5, 25) and torch.equal(r[0].argmax(1), torch.tensor([0, 0, 1, 24, 19]))


def write_task(folder, task, rows):
    with gzip.open(folder / f"{task}.tsv.gz", "wt") as f:
        f.write("id\tsplit\tlabel\tsequence\n")
        for i, (split, label, seq) in enumerate(rows):
            f.write(f"p{i}\t{split}\t{label}\t{seq}\n")


@pytest.fixture
def probe_dir(tmp_path):
    """Synthetic probe sets a composition baseline can solve: the class is the most frequent of three amino
    acids, the 'solubility' the fraction of K, the 'structure' H on A, E on V, C elsewhere."""
    rng = np.random.default_rng(4)
    letters = "LAGVSERTIDPKQNFYMHWC"
    split_of = lambda i: "train" if i % 5 < 3 else ("valid" if i % 5 == 3 else "test")
    scl, esol, ss = [], [], []
    for i in range(150):
        c = i % 3
        p = np.full(20, 1.0)
        p[letters.index("AGV"[c])] = 8.0
        seq = "".join(rng.choice(list(letters), size=int(rng.integers(20, 80)), p=p / p.sum()))
        scl.append((split_of(i), f"class{c}", seq))
        esol.append((split_of(i), seq.count("K") / len(seq), seq))
        lab = "".join("H" if a == "A" else "E" if a == "V" else "C" for a in seq)
        lab = "-" + lab[1:]  # an unresolved residue
        ss.append((split_of(i), lab, seq))
    write_task(tmp_path, "scl2205", scl)
    write_task(tmp_path, "esol", esol)
    write_task(tmp_path, "secondary_structure", ss)
    return tmp_path


def test_read_probe_task(probe_dir):
    data = tp.read_probe_task(str(probe_dir / "secondary_structure.tsv.gz"))
    seqs, labels = data["train"]
    assert len(seqs) == 90 and all(len(s) == len(y) for s, y in zip(seqs, labels))
    assert all(y[0] == -1 and set(y[1:]) <= {0, 1, 2} for y in labels)
    assert all(np.array_equal(y[1:] == 0, s[1:] == tp.TOKEN_ID["A"]) for s, y in zip(seqs, labels))
    esol = tp.read_probe_task(str(probe_dir / "esol.tsv.gz"))
    assert esol["test"][1].dtype == np.float64 and len(esol["valid"][0]) == 30
    bad = probe_dir / "bad"
    bad.mkdir()
    write_task(bad, "secondary_structure", [("train", "HHE", "MKVA")])
    with pytest.raises(ValueError, match=r"secondary_structure\.tsv\.gz: line 2: .*length"):
        tp.read_probe_task(str(bad / "secondary_structure.tsv.gz"))


def test_probe_benchmark_end_to_end(probe_dir):
    lines = []
    comp = tp.probe_benchmark(None, str(probe_dir), log=lines.append,
                              features=lambda s, r: tp.composition_features(s, r))
    # the composition baseline solves these synthetic tasks: a probe that learns nothing could not
    assert comp["tasks"]["scl2205"]["score"] > 0.9
    assert comp["tasks"]["esol"]["score"] > 0.9
    assert comp["tasks"]["secondary_structure"]["score"] > 0.99
    assert comp["quality_score"] == pytest.approx(np.mean([t["score"] for t in comp["tasks"].values()]))
    model = tiny_model(5)
    r = tp.probe_benchmark(model, str(probe_dir), log=lines.append)
    for task, t in r["tasks"].items():
        assert len(t["layers"]) == 4 and 0 <= t["best_layer"] < 4
        assert t["score"] == t["layers"][t["best_layer"]]["test"][t["metric"]]
        assert t["best_layer"] == int(np.argmax([l["valid"][t["metric"]] for l in t["layers"]]))
    assert math.isfinite(r["quality_score"]) and len([l for l in lines if "<- best on valid" in l]) == 6
    with pytest.raises(FileNotFoundError, match="make_probes"):
        tp.probe_benchmark(model, str(probe_dir / "nowhere"))


def test_probe_mode_with_baselines(probe_dir, tmp_path, capsys):
    model = tiny_model(6)
    folder = tp.export_model(model, model.cfg, str(tmp_path / "export"))
    runs = tp.main(["probe", folder, "--probe_dir", str(probe_dir), "--out", str(tmp_path / "p.json")])
    assert set(runs) == {"trained", "random_init", "composition"}
    # the random model's blocks are not the identity (its output projections are not zero): layers differ
    esol_layers = [l["test"]["pearson"] for l in runs["random_init"]["tasks"]["esol"]["layers"]]
    assert len({round(v, 9) for v in esol_layers}) == 4, esol_layers
    out = capsys.readouterr().out
    assert "| composition |" in out and "| random_init |" in out and "layer 3:" in out
    assert (tmp_path / "p.json").exists()


def test_tied_embeddings(tmp_path):
    model = tiny_model(7, "--tie_embeddings", "true")
    assert model.decoder.weight is model.embed.weight
    untied = tiny_model(7)
    n_tied = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for p in untied.parameters()) - n_tied == tp.V * 32
    opts, counts = tp.make_optimizers(model, model.cfg, fused=False)
    assert counts["embed"][0] == 2 and counts["head"][0] == 2  # embed (shared) + value embeds; dense + bias
    folder = tp.export_model(model, model.cfg, str(tmp_path / "tied"))
    loaded, cfg = tp.load_model(folder)
    assert cfg.tie_embeddings and loaded.decoder.weight is loaded.embed.weight
    tokens, starts, _ = tp.pack([np.array([4, 5, 6, 7], np.uint8)])
    assert torch.equal(loaded(tokens, starts), model(tokens, starts))


def test_tied_head_starts_near_uniform():
    """The tied decoder's logits are scaled by D^-0.5 (T5): at init the loss is near log(V), not ~sqrt(D)
    nats above it (unscaled unit-norm rows gave ~9.5 nats at step 10 of a GPU run)."""
    torch.manual_seed(0)
    tokens = torch.randint(4, 24, (256,))
    starts = torch.zeros(256, dtype=torch.bool)
    starts[::64] = True
    for dim in (32, 256):
        model = tiny_model(7, "--tie_embeddings", "true", "--model_dim", str(dim), "--mlp_dim", str(2 * dim))
        loss = model(tokens, starts, tokens)
        assert loss.item() < math.log(tp.V) + 0.5, (dim, loss.item())
