"""Masked diffusion (objective diffusion / mlm_to_diffusion), the validation NELBO, generation by iterative
unmasking and pseudo-perplexity scoring (CPU).

Run: python -m pytest -q tests/test_diffusion.py
"""
import gzip
import json
import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import train_plm as tp
from conftest import random_sequences, write_sequences

torch.set_num_threads(1)
LN_V = math.log(tp.V)
CANONICAL_LETTERS = set("LAGVSERTIDPKQNFYMHWC")


def cfg_of(*argv):
    return tp.parse_config(["--preset", "cpu", *map(str, argv)], has_gpu=False)


def packed(lengths, rng):
    """A packed batch of random residue sequences: tokens (T,) int64, starts (T,) bool (plus a padding tail)."""
    tokens, starts, _ = tp.pack([rng.integers(4, 29, n) for n in lengths])
    return tokens, starts


def tiny_model(seed=0, random_head=True):
    torch.manual_seed(seed)
    model = tp.ProteinLM(cfg_of("--num_layers", 2, "--model_dim", 32, "--num_heads", 2, "--mlp_dim", 64))
    if random_head:  # the decoder starts at zero (uniform predictions); give it something to say
        torch.nn.init.normal_(model.decoder.weight, std=0.5)
    return model.eval()


def t_of(weights, tokens):
    """Recover each masked position's t from its weight 1 / (t * residues)."""
    residues = int(((tokens >= 4) & (tokens < 29)).sum())
    return 1.0 / (weights * residues)


def test_diffusion_loss_equals_a_hand_computation():
    rng = np.random.default_rng(0)
    tokens, starts = packed([30, 50, 7], rng)
    lo, hi = 0.1, 0.9
    inputs, labels, weights = tp.diffusion_mask(tokens, starts, lo, hi, torch.Generator().manual_seed(3))
    # the same draws by hand: one offset, then one uniform per token
    g = torch.Generator().manual_seed(3)
    offset = torch.rand((), generator=g).item()
    u = torch.rand(tokens.shape, generator=g)
    doc = (torch.cumsum(starts.int(), 0) - 1).numpy()
    residue = ((tokens >= 4) & (tokens < 29)).numpy()
    n_res = residue.sum()
    model = tiny_model()
    logits = model(inputs, starts)
    expected, masked_total = 0.0, 0
    for i in range(3):
        t = lo + (hi - lo) * ((offset + i * tp.GOLDEN) % 1.0)
        pos = np.nonzero((doc == i) & residue)[0]
        m = u[pos].numpy() < t
        m[np.argmin(u[pos].numpy())] = True  # at least one per sequence
        for p in pos[m]:
            expected += F.cross_entropy(logits[p:p + 1], tokens[p:p + 1]).item() / (t * n_res)
            assert inputs[p] == tp.MASK and labels[p] == tokens[p]
            assert weights[p].item() == pytest.approx(1 / (t * n_res), rel=1e-5)
        masked_total += m.sum()
    assert int((labels != -100).sum()) == masked_total and int((inputs == tp.MASK).sum()) == masked_total
    loss = model(inputs, starts, labels, weights)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    # not divided by t twice: with t fixed at r, the loss is the masked mean scaled by (masked / (r * n_res))
    inputs, labels, weights = tp.diffusion_mask(tokens, starts, 0.3, 0.3, torch.Generator().manual_seed(4))
    mean = model(inputs, starts, labels).item()
    n_masked = int((labels != -100).sum())
    assert model(inputs, starts, labels, weights).item() == pytest.approx(mean * n_masked / (0.3 * n_res), rel=1e-5)


def test_t_is_drawn_per_sequence():
    rng = np.random.default_rng(1)
    tokens, starts = packed([400] * 12, rng)
    inputs, labels, weights = tp.diffusion_mask(tokens, starts, 0.001, 1.0, torch.Generator().manual_seed(0))
    doc = torch.cumsum(starts.int(), 0) - 1
    ts = []
    for i in range(12):
        sel = (doc == i) & (labels != -100)
        t = t_of(weights[sel], tokens)
        assert torch.allclose(t, t[0].expand_as(t), rtol=1e-5)  # one t within a sequence
        frac = sel.sum().item() / 400
        assert abs(frac - t[0].item()) < 0.1 or sel.sum().item() == 1  # the mask rate follows that t
        ts.append(t[0].item())
    assert len({round(t, 6) for t in ts}) == 12, ts  # and it differs between sequences
    assert min(ts) >= 0.001 - 1e-6 and max(ts) <= 1.0 + 1e-6
    assert max(ts) - min(ts) > 0.7  # the low-discrepancy draws cover the range
    # special tokens and padding are never masked
    special = (tokens < 4) | (tokens >= 29)
    assert not (labels[special] != -100).any() and torch.equal(inputs[special], tokens[special])


def test_tiny_t_gives_one_mask_per_sequence_and_no_nan():
    rng = np.random.default_rng(2)
    tokens, starts = packed([1, 5, 300, 40], rng)
    inputs, labels, weights = tp.diffusion_mask(tokens, starts, 1e-7, 1e-7, torch.Generator().manual_seed(0))
    doc = torch.cumsum(starts.int(), 0) - 1
    for i in range(4):
        assert int(((doc == i) & (labels != -100)).sum()) == 1
    assert int((labels != -100).sum()) == 4  # the padding tail (its own documents) has none
    model = tiny_model()
    model.train()
    loss = model(inputs, starts, labels, weights)
    loss.backward()
    assert torch.isfinite(loss) and loss.item() > 1e3  # weights 1 / (t n): huge, but finite
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_mlm_to_diffusion_schedule():
    cfg = cfg_of("--objective", "mlm_to_diffusion", "--mask_rate", 0.2, "--mlm_steps", 10, "--widen_steps", 20,
                 "--diffusion_t_min", 0.01)
    assert tp.diffusion_t_range(0, cfg) == (0.2, 0.2)
    assert tp.diffusion_t_range(10, cfg) == (0.2, 0.2)
    lo, hi = tp.diffusion_t_range(20, cfg)
    assert lo == pytest.approx(0.105) and hi == pytest.approx(0.6)
    assert tp.diffusion_t_range(30, cfg) == pytest.approx((0.01, 1.0))
    assert tp.diffusion_t_range(1000, cfg) == pytest.approx((0.01, 1.0))
    assert tp.diffusion_t_range(0, cfg_of("--objective", "diffusion", "--diffusion_t_min", 0.05)) == (0.05, 1.0)
    with pytest.raises(SystemExit):
        cfg_of("--objective", "mdlm")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    d = tmp_path_factory.mktemp("diffshards")
    rng = np.random.default_rng(0)
    for split, n in (("train", 60), ("valid", 12), ("test", 12)):
        write_sequences(d / f"d_{split}_000000.bin", random_sequences(rng, n, 20, 200))
    return d


def run_args(shards, tmp_path, *extra):
    return ["--preset", "cpu", "--train_files", str(shards / "d_train_*.bin"), "--valid_files",
            str(shards / "d_valid_*.bin"), "--test_files", str(shards / "d_test_*.bin"), "--log_dir",
            str(tmp_path / "logs"), "--out_dir", str(tmp_path / "ck"), "--run_id", "d", "--num_layers", "2",
            "--model_dim", "32", "--num_heads", "2", "--mlp_dim", "64", "--tokens_per_micro_batch", "1024",
            "--tokens_per_step", "2048", "--max_length", "256", "--warmup_steps", "1", "--eval_every", "0",
            "--log_every", "1", "--nelbo_grid", "4", *map(str, extra)]


def test_the_schedule_reaches_the_masking_applied_in_training(shards, tmp_path, monkeypatch):
    """The masking that training applies (not a setting somewhere else) follows mlm_to_diffusion's schedule:
    MLM (80/10/10, as objective mlm) for mlm_steps steps, then diffusion with t widening from mask_rate."""
    calls = []
    real_diffusion, real_mlm = tp.diffusion_mask, tp.mask_tokens

    def spy(tokens, starts, t_lo, t_hi, generator):
        out = real_diffusion(tokens, starts, t_lo, t_hi, generator)
        masked = out[1] != -100
        calls.append((t_lo, t_hi, t_of(out[2][masked], tokens)))
        return out

    def spy_mlm(tokens, rate, generator, bert=True):
        calls.append(("mlm", rate, bert))
        return real_mlm(tokens, rate, generator, bert)

    monkeypatch.setattr(tp, "diffusion_mask", spy)
    monkeypatch.setattr(tp, "mask_tokens", spy_mlm)
    result = tp.main(run_args(shards, tmp_path, "--objective", "mlm_to_diffusion", "--steps", 6, "--mlm_steps", 2,
                              "--widen_steps", 2, "--mask_rate", 0.25, "--diffusion_t_min", 0.01))
    assert len(calls) == 12  # 6 steps x 2 micro-batches
    assert calls[:4] == [("mlm", 0.25, True)] * 4  # steps 0 and 1: MLM
    for step in range(2, 6):
        for lo, hi, t in calls[2 * step:2 * step + 2]:
            want = {2: (0.25, 0.25), 3: (0.13, 0.625)}.get(step, (0.01, 1.0))
            assert (lo, hi) == pytest.approx(want)
            assert t.min().item() >= want[0] - 1e-5 and t.max().item() <= want[1] + 1e-5
            if step == 2:
                assert torch.allclose(t, torch.full_like(t, 0.25))
    assert max(t.max().item() - t.min().item() for _, _, t in calls[8:]) > 0.3  # widened: t varies
    assert result["objective"] == "mlm_to_diffusion" and math.isfinite(result["val_nelbo"])
    assert math.isfinite(result["val_loss"])
    log = (tmp_path / "logs" / "d.txt").read_text()
    assert re.search(r"^step:6/6 val_loss:\S+ .* val_nelbo:\S+ train_time:", log, re.M)


def test_validation_nelbo_of_a_uniform_model(tmp_path):
    """A model that predicts uniformly (zero decoder) scores ln(33) at every masked position; the NELBO is
    then ln(33) x sum over the grid of (masked / t) / residues, close to ln(33)."""
    path = write_sequences(tmp_path / "v_valid_000000.bin", random_sequences(np.random.default_rng(5), 400, 50, 300))
    cfg = cfg_of("--nelbo_grid", 5, "--max_length", 256, "--tokens_per_micro_batch", 1024)
    grid = tp.nelbo_batches([str(path)], cfg)
    _, counts = tp.eval_batches([str(path)], cfg)
    residues = int(counts[4:29].sum())
    assert [t for t, _ in grid] == pytest.approx([0.1, 0.3, 0.5, 0.7, 0.9])
    # the strata partition the split: every residue is in exactly one, masked at that stratum's t
    residues_of = lambda b: int((((b[0] >= 4) & (b[0] < 29)) | (b[2] != -100)).sum())  # unmasked + masked
    per_stratum = [sum(residues_of(b) for b in batches) for _, batches in grid]
    assert sum(per_stratum) == residues
    for (t, batches), n in zip(grid, per_stratum):
        assert sum(int((b[2] != -100).sum()) for b in batches) / n == pytest.approx(t, abs=0.03)
    expected = LN_V * sum(sum(int((b[2] != -100).sum()) for b in batches) / t for t, batches in grid) / residues
    nelbo = tp.validation_nelbo(tiny_model(random_head=False), grid, residues, torch.device("cpu"), 0, 1,
                                torch.autocast("cpu", enabled=False))
    assert nelbo == pytest.approx(expected, rel=1e-6)  # fp32 logits
    assert abs(nelbo - LN_V) < 0.1
    again = tp.nelbo_batches([str(path)], cfg)  # masks fixed by the seed
    assert all(np.array_equal(a[2], b[2]) for (_, x), (_, y) in zip(grid, again) for a, b in zip(x, y))


def test_generation_lengths_letters_determinism():
    model = tiny_model()
    templates = [tp.parse_template("7"), tp.parse_template("30"), np.full(130, tp.MASK, np.uint8)]
    out = tp.generate(model, templates, steps=8, temperature=1.0, seed=0)
    assert [len(s) for s in out] == [7, 30, 130]
    assert all(set(s) <= CANONICAL_LETTERS for s in out), out
    assert tp.generate(model, templates, steps=8, temperature=1.0, seed=0) == out
    assert tp.generate(model, templates, steps=8, temperature=1.0, seed=1) != out
    greedy = tp.generate(model, templates, steps=3, temperature=0, seed=0)
    assert [len(s) for s in greedy] == [7, 30, 130] and all(set(s) <= CANONICAL_LETTERS for s in greedy)


def test_completion_never_changes_given_residues():
    model = tiny_model(1)
    text = "MKT--AYIA<mask>KQRXBZ-----W<mask>"
    template = tp.parse_template(text)
    assert len(template) == 23 and int((template == tp.MASK).sum()) == 9
    for steps in (1, 4, 9, 30):
        [s] = tp.generate(model, [template], steps=steps, temperature=1.5, seed=steps)
        assert len(s) == 23
        for a, b in zip(tp.decode(template, skip_special=False).replace("<mask>", "?"), s):
            if a != "?":
                assert a == b  # given residues, X B Z included, stay
            else:
                assert b in CANONICAL_LETTERS
    with pytest.raises(ValueError, match="not a residue"):
        tp.parse_template("MK<cls>A")
    with pytest.raises(ValueError, match="not in the ESM-2 vocabulary"):
        tp.parse_template("MKJ")
    with pytest.raises(ValueError, match="character 'J' at position 3 "):  # 1-based, in the text as written
        tp.parse_template("M-J")
    assert list(tp.parse_template("M-<mask>K")) == [tp.TOKEN_ID["M"], tp.MASK, tp.MASK, tp.TOKEN_ID["K"]]


def test_pseudo_perplexity():
    rng = np.random.default_rng(3)
    seqs = [rng.integers(4, 24, n) for n in (5, 40, 17)]
    mean, ppl, skipped = tp.pseudo_perplexity(tiny_model(random_head=False), seqs, tokens_per_batch=300)
    assert mean == pytest.approx(LN_V, abs=1e-6) and ppl == pytest.approx(tp.V, rel=1e-5) and skipped == 0
    model = tiny_model(2)
    by_hand = []
    for s in seqs:  # one sequence at a time, one masked position at a time
        for j in range(len(s)):
            x = s.copy()
            x[j] = tp.MASK
            tokens, starts, _ = tp.pack([x])
            by_hand.append(F.cross_entropy(model(tokens, starts)[j + 1:j + 2], torch.tensor([int(s[j])])).item())
    mean, ppl, _ = tp.pseudo_perplexity(model, seqs, tokens_per_batch=100)
    assert mean == pytest.approx(np.mean(by_hand), abs=1e-5) and ppl == pytest.approx(math.exp(mean))
    # X (24) and B (25) stay in the context but are not scored: the mean is over the canonical positions only
    with_x = [s.copy() for s in seqs]
    with_x[1][[3, 7]] = [24, 25]
    mean_x, _, skipped = tp.pseudo_perplexity(model, with_x, tokens_per_batch=100)
    assert skipped == 2
    with pytest.raises(ValueError, match=r"no canonical residue to score \(all 3 are X B U Z O\)"):
        tp.pseudo_perplexity(model, [np.array([24, 25, 24])])
    by_hand = []
    for s in with_x:
        for j in range(len(s)):
            if s[j] < 24:
                x = s.copy()
                x[j] = tp.MASK
                tokens, starts, _ = tp.pack([x])
                by_hand.append(F.cross_entropy(model(tokens, starts)[j + 1:j + 2], torch.tensor([int(s[j])])).item())
    assert mean_x == pytest.approx(np.mean(by_hand), abs=1e-5)


def test_generate_and_score_commands(tmp_path, capsys):
    folder = tp.export_model(tiny_model(), tiny_model().cfg, str(tmp_path / "export"))
    out = tmp_path / "gen.fasta"
    seqs = tp.main(["generate", folder, "--num", "3", "--length", "12", "--steps", "4", "--seed", "5",
                    "--out", str(out)])
    ids, parsed, notes = tp.read_fasta(str(out))
    assert notes == dict(upper_cased=0, stop_stripped=0)
    assert ids == ["generated_0", "generated_1", "generated_2"]
    assert [tp.decode(p) for p in parsed] == seqs and all(len(s) == 12 for s in seqs)
    tp.main(["generate", folder, "--template", "MK--A", "--seed", "5"])
    printed = capsys.readouterr().out
    assert re.fullmatch(r">generated_0 seed=5 temperature=1.0 steps=5 order_noise=4.5 template=0\nMK[A-Z]{2}A\n", printed)
    # --num with templates: that many from each template, in template order; --length is a template's own
    seqs = tp.main(["generate", folder, "--template", "MK--A", "--template", "4", "--num", "2", "--seed", "5"])
    headers = re.findall(r">generated_(\d) .* template=(\d)\n", capsys.readouterr().out)
    assert headers == [("0", "0"), ("1", "0"), ("2", "1"), ("3", "1")]
    assert [len(s) for s in seqs] == [5, 5, 4, 4] and all(s.startswith("MK") and s[4] == "A" for s in seqs[:2])
    with pytest.raises(SystemExit) as e:
        tp.main(["generate", folder, "--template", "MK--A", "--length", "9"])
    assert e.value.code == 2 and "--length sets the length of sequences without a template" in capsys.readouterr().err
    result = tp.main(["score", folder, str(out)])
    assert result["sequences"] == 3 and sum(result["composition"].values()) == pytest.approx(1.0)
    assert result["cropped"] == 0
    # longer than the model's context: scored on the first max_length - 2 residues, counted and reported
    context = tiny_model().cfg.max_length - 2
    rng = np.random.default_rng(3)
    long_seq = "".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), context + 7))
    crop_file = tmp_path / "long.fasta"
    crop_file.write_text(f">long\n{long_seq}\n>short\n{long_seq[:10]}\n")
    capsys.readouterr()
    result = tp.main(["score", folder, str(crop_file)])
    printed = capsys.readouterr().out
    assert result["cropped"] == 1 and f"1 longer than the model's context cropped to their first {context}" in printed
    assert f"{context + 10} residues scored" in printed
    whole = tp.pseudo_perplexity(tp.load_model(folder)[0], [tp.encode(long_seq[:context], add_special=False),
                                                            tp.encode(long_seq[:10], add_special=False)])
    assert result["pseudo_nll"] == pytest.approx(whole[0])
    with pytest.raises(SystemExit):
        tp.main(["generate", folder, "--template", "MK<eos>"])
    with pytest.raises(SystemExit):  # longer than the model's context (cfg_of's max_length)
        tp.main(["generate", folder, "--length", str(tiny_model().cfg.max_length - 1)])
    bad = tmp_path / "bad.fasta"
    bad.write_text(">a\nmkv*\n>b\nMK\nVA*\n")  # normalised like data/prepare.py, and counted
    ids, parsed, notes = tp.read_fasta(str(bad))
    assert [tp.decode(p) for p in parsed] == ["MKV", "MKVA"] and notes == dict(upper_cased=1, stop_stripped=2)
    bad.write_text(">ok\nMKV\n>broken one\nMK1V\n")
    with pytest.raises(ValueError, match=r"bad\.fasta: record 'broken'"):
        tp.read_fasta(str(bad))
    bad.write_text(">empty\n>ok\nMKV\n")
    with pytest.raises(ValueError, match="record 'empty' is empty"):
        tp.read_fasta(str(bad))
    bad.write_text(">a\nMK*V\n")
    with pytest.raises(ValueError, match=r"record 'a': character '\*' at position 3"):
        tp.read_fasta(str(bad))
    # as data/prepare.py: only the 25 residue letters; gaps and tokens are refused, not read as tokens
    for text, char, pos in ((">g\nMK-V\n", "-", 3), (">g\nMK.V\n", ".", 3), (">g\nMK<mask>V\n", "<", 3)):
        bad.write_text(text)
        with pytest.raises(ValueError, match=f"record 'g': character '{re.escape(char)}' at position {pos} is not a residue"):
            tp.read_fasta(str(bad))
    bad.write_bytes("\ufeff>bom\nMKV\n".encode())  # a UTF-8 byte-order mark before the first header
    assert tp.read_fasta(str(bad))[0] == ["bom"]
    bad.write_text(">allx\nXXXXB\n")  # nothing canonical to score: an error, not a perfect score
    with pytest.raises(SystemExit, match=r"bad\.fasta: no canonical residue to score \(all 5 are X B U Z O\)"):
        tp.main(["score", folder, str(bad)])
    bad.write_text(">x\nMKXVB\n")  # X and B: context, not scored, and not counted as scored
    capsys.readouterr()
    assert tp.main(["score", folder, str(bad)])["not_scored"] == 2
    assert "3 residues scored" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="not an export folder"):
        tp.main(["score", str(tmp_path), str(out)])
    # command-line errors: one line naming the file, no traceback
    bad.write_text("")
    with pytest.raises(SystemExit, match=r"score: error: .*bad\.fasta: no FASTA record"):
        tp.main(["score", folder, str(bad)])
    trunc = tmp_path / "t.fasta.gz"
    text = "".join(f">r{i}\n{''.join(np.random.default_rng(i).choice(list('ACDEFGHIKLMNPQRSTVWY'), 200))}\n"
                   for i in range(50))
    data = gzip.compress(text.encode())
    trunc.write_bytes(data[:len(data) // 2])
    with pytest.raises(SystemExit, match=r"t\.fasta\.gz: cannot read"):
        tp.main(["score", folder, str(trunc)])
    with pytest.raises(SystemExit, match="nothere"):
        tp.main(["score", str(tmp_path / "nothere"), str(out)])
    # a missing file: 'FILE: reason', as the other errors (not Python's '[Errno 2] ...')
    with pytest.raises(SystemExit, match=r"^train_plm\.py score: error: \S*missing\.fasta: No such file or directory$"):
        tp.main(["score", folder, str(tmp_path / "missing.fasta")])
    # --out in a folder that does not exist: a usage error before generating or probing, not after
    for mode in ("generate", "probe"):
        capsys.readouterr()
        with pytest.raises(SystemExit) as e:
            tp.main([mode, folder, "--out", str(tmp_path / "nodir" / "o.txt")])
        assert e.value.code == 2
        assert f"train_plm.py {mode}: error: --out " in capsys.readouterr().err
    for flags in (["--num", "0"], ["--length", "0"], ["--temperature", "-1"], ["--template", ""],
                  ["--temperature", "nan"], ["--temperature", "inf"], ["--order_noise", "nan"]):
        capsys.readouterr()
        with pytest.raises(SystemExit) as e:
            tp.main(["generate", folder, *flags])
        assert e.value.code == 2 and f"error: {flags[0]}" in capsys.readouterr().err  # the flag is named
    capsys.readouterr()
    with pytest.raises(SystemExit):  # a bad template is named by its flag and text
        tp.main(["generate", folder, "--template", "MKT1J"])
    assert "error: --template 'MKT1J': character '1' at position 4" in capsys.readouterr().err
    # a file that is no checkpoint: one line naming it, not torch's page of text
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    for path in (junk, tmp_path / "export" / "config.json"):
        with pytest.raises(SystemExit, match=rf"^train_plm\.py generate: error: {re.escape(str(path))}: not a "
                                             r"readable checkpoint \(a ckpt_\*\.pt of train_plm\.py\): \w+: [^\n]*$"):
            tp.main(["generate", str(path)])
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(SystemExit, match=r"other\.pt: not a checkpoint of train_plm\.py \(no config and model in it\)"):
        tp.main(["generate", str(tmp_path / "other.pt")])


def test_a_valid_split_smaller_than_the_nelbo_grid(tmp_path, shards):
    """Fewer valid sequences than nelbo_grid strata: the empty strata are skipped, the run finishes."""
    write_sequences(tmp_path / "few_valid_000000.bin", random_sequences(np.random.default_rng(9), 3, 20, 60))
    args = run_args(shards, tmp_path, "--objective", "diffusion", "--steps", 2, "--nelbo_grid", 8)
    args[args.index("--valid_files") + 1] = str(tmp_path / "few_valid_*.bin")
    result = tp.main(args)
    assert math.isfinite(result["val_nelbo"])
    grid = tp.nelbo_batches([str(tmp_path / "few_valid_000000.bin")], cfg_of("--nelbo_grid", 8))
    assert [t for t, _ in grid] == pytest.approx([0.0625, 0.1875, 0.3125])
    write_sequences(tmp_path / "none_valid_000000.bin", [])
    args[args.index("--valid_files") + 1] = str(tmp_path / "none_valid_*.bin")
    with pytest.raises(SystemExit, match=r"none_valid_000000\.bin: a shard must start with <cls>"):
        tp.main(args)


def test_mlm_phase_of_mlm_to_diffusion_is_mlm(shards, tmp_path):
    """Before mlm_steps, mlm_to_diffusion trains exactly objective mlm (same masks; the weighted form of the
    mean CE), so its warm-up costs nothing against pure MLM. To rounding: mlm runs the last block's MLP and the
    head at the masked rows only (sparse prediction), mlm_to_diffusion on every row."""
    a = tp.main(run_args(shards, tmp_path / "a", "--objective", "mlm", "--steps", 3, "--nelbo_grid", 0))
    b = tp.main(run_args(shards, tmp_path / "b", "--objective", "mlm_to_diffusion", "--mlm_steps", 3, "--steps", 3,
                         "--nelbo_grid", 0))
    assert b["val_loss"] == pytest.approx(a["val_loss"], abs=1e-4) and a["val_loss"] != 0
