#!/usr/bin/env python3
"""Check a record (or experiment) folder of the plm-speedrun: logs, numbers, statistics, cost, plot.

Usage:
    python records/check_record.py records/<folder> [--target 2.70] [--previous records/<older>]
                                   [--price_per_gpu_hour 3.5] [--plot [PNG]] [--table [record|experiment]]
                                   [--require_pass] [--track speed|quality] [--budget_s 180]
    python records/check_record.py records/A records/B --plot out.png      # several folders, one plot

What it does, for each folder:
  * reads every `*.txt` log in it and checks that each begins with a byte-identical copy of the folder's
    `train_plm.py` followed by a line of 100 '=' (what train_plm.py writes at the top of every log);
  * extracts the RESULT lines (the json after `RESULT `; the last one is the log's final result) and the
    validation curve (lines `step:50/200 val_loss:2.9003 ... train_time:66.2s tokens:...`);
  * prints per log: run_id, seed, final val_loss, train_time_s, gpu_hours and its cost at
    --price_per_gpu_hour (an assumed price; gpu_hours = GPUs x training hours, taken from the RESULT line or,
    for logs written before the field existed, derived as world_size x train_time_s / 3600 on a GPU);
  * prints mean, standard deviation (n-1) and standard error of the final val losses and train times, a
    one-sided one-sample t-test of "mean val loss < target" (t = (mean - target) / (sd / sqrt(n)), n-1
    degrees of freedom, p = P(T <= t)) and PASS / FAIL against p < 0.01; the rules also need >= 3 runs,
    each with its own seed, all on the same hardware, each trained to the end of its schedule (RESULT
    `steps` equal to the logged config's `steps`: no early stop);
  * with --previous: the speed-up, mean train time of --previous / mean train time of this folder (marked
    when the hardware differs);
  * when a run has a `quality_score` (trained with --probe true) or with --track quality: the mean and spread
    of quality_score and the quality track's check: >= 3 runs, each with a quality_score and a training clock
    of at most --budget_s seconds (default 180), distinct seeds, one hardware, whole schedules.

Options:
  --plot [PNG]   validation loss against training time for every log of the given folder(s), with a
                 horizontal line at --target (PNG defaults to records/val_curves.png). Needs matplotlib;
                 without it the plot is skipped (printed) and nothing else changes.
  --table [KIND] print the markdown row(s) of records/README.md for the given folder(s), computed from the
                 logs (numbers) and each folder's name (date) and README title ("what changed"). KIND is
                 `record` (default: the "Records" table; folders whose runs pass the statistical check are
                 ranked by mean train time, the others are marked as not reaching the target) or
                 `experiment` (the "Notable experiments" table) or `quality` (the quality track: folders
                 that pass its check ranked by mean quality_score, highest first).
  --track T      speed (default) or quality: the check that --require_pass applies.

Exit status: 0 when every log is well-formed; 1 when a log is malformed (source mismatch, no separator, no
RESULT line, a RESULT line that is not json with val_loss and train_time_s) or a folder has no log or no
train_plm.py; 2 for a usage error (argparse); 3 with --require_pass when a folder's check for --track fails
(fewer than 3 runs, p >= 0.01, or a rule above; for quality, a run without quality_score or over the budget).
Without --require_pass the statistical outcome is only printed.

Standard library only (no numpy / scipy): the t distribution's CDF is computed through the regularized
incomplete beta function (continued fraction, Numerical Recipes' betacf with the modified Lentz method).
"""
import argparse
import json
import math
import re
import sys
from pathlib import Path

SEPARATOR = b"=" * 100 + b"\n"
ALPHA = 0.01
MIN_RUNS = 3
DEFAULT_PLOT = Path(__file__).resolve().parent / "val_curves.png"
REFERENCE_VALID = "data/reference/reference_valid_*.bin"  # the speed track's validation split
PER_RUN_SETTINGS = {"seed", "run_id", "log_dir", "out_dir", "resume", "save_every", "save_model", "hub_repo", "wandb",
                    "wandb_project", "probe", "probe_dir"}  # may differ between the runs of one record
VAL_RE = re.compile(r"^step:(\d+)/(\d+) val_loss:([-+0-9.eE]+|nan|inf)\b.*?\btrain_time:([0-9.]+)s")


# ----------------------------------------------------------------------------------------------------------
# Statistics (math only).

def _betacf(a, b, x, max_iter=500, eps=1e-15):
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, max_iter + 1):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            return h
    return h  # converged to within float noise for every (a, b, x) used here


def betainc(a, b, x, y=None):
    """Regularized incomplete beta function I_x(a, b) for a, b > 0, 0 <= x <= 1; y = 1 - x may be given
    exactly when the caller knows it (it keeps precision for x close to 1)."""
    y = 1.0 - x if y is None else y
    if x <= 0.0:
        return 0.0
    if y <= 0.0:
        return 1.0
    ln_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(y)
    front = math.exp(ln_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, y) / b


def t_cdf(t, df):
    """P(T <= t) for Student's t distribution with df > 0 degrees of freedom."""
    if math.isnan(t):
        return math.nan
    if math.isinf(t):
        return 0.0 if t < 0 else 1.0
    # P(T <= -|t|) = I_x(df/2, 1/2) / 2 with x = df / (df + t^2); 1 - x = t^2 / (df + t^2) given exactly
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t), t * t / (df + t * t))
    return tail if t < 0 else 1.0 - tail


def mean_std_se(values):
    """(mean, sample standard deviation (n-1), standard error); std and se are nan for n < 2."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan, math.nan
    mean = math.fsum(values) / n
    if n < 2:
        return mean, math.nan, math.nan
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, sd, sd / math.sqrt(n)


def t_test_less(values, target):
    """One-sided one-sample t-test of H1: mean < target. Returns (t, df, p); (nan, nan, nan) for n < 2."""
    n = len(values)
    if n < 2:
        return math.nan, math.nan, math.nan
    mean, _, se = mean_std_se(values)
    df = n - 1
    if se == 0.0:  # identical values: the sign decides
        t = -math.inf if mean < target else (math.inf if mean > target else 0.0)
        return t, df, (0.0 if mean < target else (1.0 if mean > target else 0.5))
    t = (mean - target) / se
    return t, df, t_cdf(t, df)


# ----------------------------------------------------------------------------------------------------------
# Reading folders.

class Run:
    """One log: its final RESULT (a dict), every RESULT, and the validation curve [(step, time_s, loss)]."""

    def __init__(self, path, results, curve, config=None):
        self.path, self.results, self.curve, self.config = path, results, curve, config or {}
        self.result = results[-1]
        r = self.result
        # a run that ended before its schedule (the stop rule, or a resume past a stop) is not a record run
        planned, done = self.config.get("steps"), r.get("steps")
        self.early_stop = planned is not None and done is not None and int(done) < int(planned)
        self.run_id = r.get("run_id", path.stem)
        self.seed = r.get("seed")
        self.val_loss = float(r["val_loss"])
        self.train_time_s = float(r["train_time_s"])
        self.gpu_hours_derived = "gpu_hours" not in r
        if self.gpu_hours_derived:  # logs from before the field: GPUs x training hours on a GPU, else 0
            on_gpu = str(r.get("device", "cpu")).lower() != "cpu"
            self.gpu_hours = int(r.get("world_size", 1)) * self.train_time_s / 3600 if on_gpu else 0.0
        else:
            self.gpu_hours = float(r["gpu_hours"] or 0.0)
        self.hardware = f"{int(r.get('world_size', 1))}x {r.get('device', '?')}"
        q = r.get("quality_score")  # the quality track's score: runs with --probe true
        self.quality_score = None if q is None else float(q)


def read_log(path, source):
    """Parse one log. Returns (Run or None, list of error strings)."""
    data = path.read_bytes()
    if not data.startswith(source):
        return None, [f"{path}: does not begin with a byte-identical copy of {path.parent / 'train_plm.py'}"]
    if not data[len(source):].startswith(SEPARATOR):
        return None, [f"{path}: the source copy is not followed by a line of 100 '='"]
    body = data[len(source) + len(SEPARATOR):].decode("utf-8", errors="replace")
    results, curve, errors, config = [], [], [], None
    for i, line in enumerate(body.splitlines(), start=1):
        if line.startswith("config {"):  # the resolved settings (a resumed run logs them again: the last wins)
            try:
                config = json.loads(line[len("config "):])
            except ValueError:
                errors.append(f"{path}: config line {i} after the source is not json")
            continue
        if line.startswith("RESULT "):
            try:
                r = json.loads(line[len("RESULT "):])
                if not isinstance(r, dict) or "val_loss" not in r or "train_time_s" not in r:
                    raise ValueError("no val_loss / train_time_s")
                float(r["val_loss"]), float(r["train_time_s"])
                results.append(r)
            except (ValueError, TypeError) as e:
                errors.append(f"{path}: RESULT line {i} after the source is malformed ({e})")
            continue
        m = VAL_RE.match(line)
        if m:
            curve.append((int(m.group(1)), float(m.group(4)), float(m.group(3))))
    if not results and not errors:
        errors.append(f"{path}: no RESULT line (the run did not finish?)")
    # the log prints 4 decimals and RESULT 5: the two roundings of one value differ by up to 5e-5 + 5e-6
    if results and curve and abs(curve[-1][2] - float(results[-1]["val_loss"])) > 5.5e-5 + 1e-9:
        errors.append(f"{path}: the RESULT val_loss {results[-1]['val_loss']} is not the log's last validation "
                      f"line (step {curve[-1][0]}: {curve[-1][2]})")
    if errors:
        return None, errors
    return Run(path, results, curve, config), []


def read_folder(folder):
    """Returns (list of Run sorted by file name, list of error strings)."""
    folder = Path(folder)
    src_path = folder / "train_plm.py"
    if not folder.is_dir():
        return [], [f"{folder}: not a folder"]
    if not src_path.is_file():
        return [], [f"{folder}: no train_plm.py"]
    source = src_path.read_bytes()
    logs = sorted(folder.glob("*.txt"))
    if not logs:
        return [], [f"{folder}: no *.txt log"]
    runs, errors = [], []
    for p in logs:
        run, errs = read_log(p, source)
        errors += errs
        if run is not None:
            runs.append(run)
    return runs, errors


def readme_title(folder):
    """The 'what changed' text: the first '# ' heading of the folder's README.md, after its first ':'."""
    p = Path(folder) / "README.md"
    if p.is_file():
        for line in p.read_text(errors="replace").splitlines():
            if line.startswith("# "):
                title = line[2:].strip()
                return title.split(":", 1)[1].strip() if ":" in title else title
    return "(no README.md)"


# ----------------------------------------------------------------------------------------------------------
# Report.

def fmt(x, spec):
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def folder_stats(runs, target, errors=()):
    """The speed track's check of a folder's well-formed runs; errors: the malformed logs' messages (any one
    fails the folder)."""
    losses = [r.val_loss for r in runs]
    times = [r.train_time_s for r in runs]
    t, df, p = t_test_less(losses, target)
    problems = rule_problems(runs)
    other = sorted({str(r.config.get("valid_files")) for r in runs if r.config.get("valid_files") != REFERENCE_VALID})
    if other:
        problems.append(f"validation split {', '.join(other)} is not the reference shards' {REFERENCE_VALID}")
    if errors:
        problems.append(f"{len(errors)} malformed log(s): see the ERROR lines")
    return dict(n=len(runs), loss=mean_std_se(losses), time=mean_std_se(times), t=t, df=df, p=p,
                gpu_hours=math.fsum(r.gpu_hours for r in runs) / max(len(runs), 1), problems=problems,
                passed=len(runs) >= MIN_RUNS and not math.isnan(p) and p < ALPHA and not problems)


def rule_problems(runs):
    """What makes a folder's runs break the speed track's rules besides the statistics: runs that stopped
    before their schedule's end, seeds used twice, runs on different hardware. Returns a list of strings."""
    out = []
    early = [f"{r.path.name} (step {r.result.get('steps')} of {r.config.get('steps')})" for r in runs if r.early_stop]
    if early:
        out.append("stopped before the end of the schedule: " + ", ".join(early))
    seeds = [r.seed for r in runs]
    if len(set(map(str, seeds))) < len(seeds):
        out.append(f"seeds repeat ({', '.join(map(str, seeds))}): each run needs its own seed")
    hardware = sorted({r.hardware for r in runs})
    if len(hardware) > 1:
        out.append("runs on different hardware (" + ", ".join(hardware) + ")")
    settings = [{k: v for k, v in r.config.items() if k not in PER_RUN_SETTINGS} for r in runs]
    differ = sorted({k for c in settings for k in c if any(d.get(k) != c.get(k) for d in settings)})
    if differ:
        out.append("settings differ between runs: " + ", ".join(differ))
    curves = {}
    for r in runs:  # one run's log copied under another seed: same curve, same clock
        curves.setdefault((tuple(r.curve), r.train_time_s), []).append(r.path.name)
    copies = [names for names in curves.values() if len(names) > 1]
    if copies:
        out.append("identical curves and times (copied logs?): " + "; ".join(", ".join(n) for n in copies))
    if runs and not (runs[0].path.parent / "README.md").is_file():
        out.append("no README.md in the folder")
    return out


def quality_stats(runs, budget_s):
    """The quality track's check of a folder: every run has a quality_score (--probe true) and trained at most
    budget_s seconds on the training clock, plus the speed track's rules (distinct seeds, one hardware, whole
    schedules) and at least MIN_RUNS runs. Returns dict(n, score=(mean, sd, se), time, gpu_hours, problems,
    passed); a higher mean quality_score ranks first."""
    problems = rule_problems(runs)
    missing = [r.path.name for r in runs if r.quality_score is None]
    if missing:
        problems.append("no quality_score (run with --probe true): " + ", ".join(missing))
    over = [f"{r.path.name} ({r.train_time_s:.1f} s)" for r in runs if r.train_time_s > budget_s]
    if over:
        problems.append(f"over the {budget_s:g} s training budget: " + ", ".join(over))
    scores = [r.quality_score for r in runs if r.quality_score is not None]
    if len(scores) < MIN_RUNS:
        problems.append(f"{len(scores)} run(s) with a quality_score, the rules need >= {MIN_RUNS}")
    return dict(n=len(scores), score=mean_std_se(scores), time=mean_std_se([r.train_time_s for r in runs]),
                gpu_hours=math.fsum(r.gpu_hours for r in runs) / max(len(runs), 1), problems=problems,
                passed=not problems)


def report(folder, runs, args, errors=()):
    price = args.price_per_gpu_hour
    print(f"== {folder}")
    print(f"{'log':<28} {'run_id':<24} {'seed':>4} {'val_loss':>9} {'train_time_s':>12} {'gpu_hours':>10} "
          f"{'cost':>9}")
    for r in runs:
        gh = fmt(r.gpu_hours, ".5f") + ("*" if r.gpu_hours_derived else "")
        print(f"{r.path.name:<28} {r.run_id:<24} {str(r.seed):>4} {r.val_loss:>9.5f} {r.train_time_s:>12.2f} "
              f"{gh:>10} {'$' + format(r.gpu_hours * price, '.4f'):>9}")
    if any(r.gpu_hours_derived for r in runs):
        print("  * gpu_hours not in the RESULT line (older log): derived as world_size x train_time_s / 3600")
    s = folder_stats(runs, args.target, errors)
    (lm, ls, le), (tm, ts, te) = s["loss"], s["time"]
    print(f"val_loss:     n={s['n']} mean={fmt(lm, '.5f')} std={fmt(ls, '.5f')} se={fmt(le, '.5f')}")
    print(f"train_time_s: n={s['n']} mean={fmt(tm, '.2f')} std={fmt(ts, '.2f')} se={fmt(te, '.2f')}")
    print(f"cost: {fmt(s['gpu_hours'], '.5f')} GPU-hours per run = ${s['gpu_hours'] * price:.4f} per run at "
          f"${price:g} per GPU-hour (assumed price)")
    if s["n"] < 2:
        print(f"t-test: needs >= 2 runs (and the rules need >= {MIN_RUNS}); "
              f"mean val_loss {fmt(lm, '.5f')} is {'below' if lm < args.target else 'not below'} "
              f"the target {args.target:.2f}")
    else:
        print(f"t-test (one-sided, H1: mean val_loss < {args.target:.2f}): t={s['t']:.4f} df={s['df']} "
              f"p={s['p']:.3g}")
    verdict = "PASS" if s["passed"] else "FAIL"
    why = []
    if s["n"] < MIN_RUNS:
        why.append(f"{s['n']} run(s), the rules need >= {MIN_RUNS}")
    if not (s["p"] < ALPHA):
        why.append(f"p {'n/a' if math.isnan(s['p']) else format(s['p'], '.3g')} is not < {ALPHA:g}")
    why += s["problems"]
    print(f"statistical check (>= {MIN_RUNS} runs, p < {ALPHA:g}): {verdict}" + (f" ({'; '.join(why)})" if why else ""))
    if args.track == "quality" or any(r.quality_score is not None for r in runs):
        q = quality_stats(runs, args.budget_s)
        qm, qs, _ = q["score"]
        print(f"quality_score: n={q['n']} mean={fmt(qm, '.5f')} std={fmt(qs, '.5f')}")
        print(f"quality track check (>= {MIN_RUNS} runs, each with a quality_score and <= {args.budget_s:g} s): "
              + ("PASS" if q["passed"] else "FAIL (" + "; ".join(q["problems"]) + ")"))
        s["quality"] = q
    return s


def plot(folder_runs, target, out):
    """Validation loss against training time for every log; returns the path written or None if skipped."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot skipped: matplotlib is not installed (pip install matplotlib)")
        return None
    # tall enough for one legend line per folder; 20 colours, then the next line style, so folders stay apart
    fig, ax = plt.subplots(figsize=(11, max(5.0, 0.19 * len(folder_runs) + 1.0)))
    times = []
    for k, (folder, runs) in enumerate(folder_runs):  # one colour per folder, one legend entry per folder
        color, label = plt.cm.tab20(k % 20), f"{Path(folder).name} ({len(runs)} log{'s' if len(runs) != 1 else ''})"
        style = ("-", "--", ":", "-.")[k // 20 % 4]
        for r in runs:
            if not r.curve:
                continue
            xs, ys = [c[1] for c in r.curve], [c[2] for c in r.curve]
            times += xs
            ax.plot(xs, ys, marker="o", ms=3, lw=1.2, ls=style, color=color, label=label)
            label = None
    ax.axhline(target, color="k", ls="--", lw=1, label=f"target {target:.2f}")
    if times and min(times) > 0 and max(times) / min(times) > 20:
        ax.set_xscale("log")
    ax.set_xlabel("training time (s; compile warm-up and evaluation excluded)")
    ax.set_ylabel("validation loss (nats, masked positions)")
    ax.set_title("plm-speedrun: validation loss against training time")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    print(f"plot written: {out}")
    return out


def quality_rows(folder_runs, budget_s, price):
    """Markdown rows of the quality track's table: folder_runs [(folder, runs)]; passing folders ranked by
    mean quality_score (highest first), the others marked with why."""
    stats = [(f, runs, quality_stats(runs, budget_s)) for f, runs in folder_runs]
    passing = sorted((-q["score"][0], str(f)) for f, _, q in stats if q["passed"])
    rank = {f: i + 1 for i, (_, f) in enumerate(passing)}
    rows = []
    for folder, runs, q in stats:
        name = Path(folder).name
        qm, qs, _ = q["score"]
        spread = f" ± {qs:.4f}" if q["n"] >= 2 else ""
        score = f"{fmt(qm, '.4f')}{spread} (n={q['n']})" + ("" if q["passed"] else f"; {'; '.join(q['problems'])}")
        hw = ", ".join(sorted({r.hardware for r in runs}))
        cost = f"${q['gpu_hours'] * price:.2f} ({q['gpu_hours']:.4f} GPU-h)"
        rows.append(f"| {rank.get(str(folder), '—')} | {score} | {q['time'][0]:.2f} s | {hw} "
                    f"| {readme_title(folder)} | {name.split('_', 1)[0]} | {cost} | [{name}]({name}/README.md) |")
    return rows


def table_rows(folder_stats_list, kind, target, price):
    """Markdown rows for records/README.md; folder_stats_list: [(folder, runs, stats)]."""
    rows = []
    if kind == "record":
        passing = sorted((s["time"][0], str(f)) for f, _, s in folder_stats_list if s["passed"])
        rank = {f: i + 1 for i, (_, f) in enumerate(passing)}
    for folder, runs, s in folder_stats_list:
        name = Path(folder).name
        date = name.split("_", 1)[0]
        link = f"[{name}]({name}/README.md)"
        lm, ls, _ = s["loss"]
        tm = s["time"][0]
        cost = f"${s['gpu_hours'] * price:.2f} ({s['gpu_hours']:.4f} GPU-h)"
        hw = ", ".join(sorted({r.hardware for r in runs}))
        spread = f" ± {ls:.4f}" if s["n"] >= 2 else ""
        if kind == "record":
            if s["passed"]:
                r = str(rank[str(folder)])
                loss = f"{lm:.4f}{spread} (n={s['n']}, p={s['p']:.2g})"
            else:
                # the baseline: the reference trainer reproduced (exempt from the statistics)
                r = "baseline" if {x.result.get("preset") for x in runs} == {"reference"} else "—"
                if s["problems"]:
                    why = "; ".join(s["problems"])
                elif not lm < target:
                    why = f"target {target:.2f} not reached"
                else:
                    why = f"not significant: needs >= {MIN_RUNS} runs with p < {ALPHA:g}"
                p_txt = f", p={s['p']:.2g}" if s["n"] >= 2 else ""
                loss = f"{lm:.4f}{spread} (n={s['n']}{p_txt}; {why})"
            rows.append(f"| {r} | {tm:.2f} s | {loss} | {hw} | {readme_title(folder)} | {date} | {cost} | {link} |")
        else:
            rows.append(f"| {date} | {readme_title(folder)} | {s['n']} | {lm:.4f}{spread} | {tm:.2f} s | {hw} "
                        f"| {cost} | {link} |")
    return rows


TABLE_HEADERS = {
    "record": ["| rank | time (training clock) | val loss | hardware | what changed | date | cost | folder |",
               "|---|---|---|---|---|---|---|---|"],
    "experiment": ["| date | experiment | logs | final val loss (mean ± sd) | time (training clock, mean) | hardware "
                   "| cost per run | folder |", "|---|---|---|---|---|---|---|---|"],
    "quality": ["| rank | quality_score (mean ± sd) | time (training clock, mean) | hardware | what changed | date "
                "| cost per run | folder |", "|---|---|---|---|---|---|---|---|"],
}


def main(argv=None):
    ap = argparse.ArgumentParser(prog="check_record.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+", help="record / experiment folder(s) under records/")
    ap.add_argument("--target", type=float, default=2.70, help="validation-loss target (default 2.70)")
    ap.add_argument("--previous", help="the previous record's folder: prints the speed-up of mean train time")
    ap.add_argument("--price_per_gpu_hour", type=float, default=3.5,
                    help="assumed price in $ per GPU-hour for the cost column (default 3.5, an H200-hour)")
    ap.add_argument("--plot", nargs="?", const=str(DEFAULT_PLOT), default=None, metavar="PNG",
                    help=f"draw val loss vs training time (default path {DEFAULT_PLOT.name} in records/)")
    ap.add_argument("--table", nargs="?", const="record", default=None, choices=["record", "experiment", "quality"],
                    help="print markdown row(s) for records/README.md (record table by default)")
    ap.add_argument("--track", choices=["speed", "quality"], default="speed",
                    help="the track whose check --require_pass applies (default speed)")
    ap.add_argument("--budget_s", type=float, default=180.0,
                    help="quality track: the training-clock budget per run in seconds (default 180, one H200)")
    ap.add_argument("--require_pass", action="store_true",
                    help="exit 2 when the folder fails its track's check (speed: >= 3 runs, p < 0.01; quality: "
                         ">= 3 runs with a quality_score, each within --budget_s)")
    args = ap.parse_args(argv)
    if args.price_per_gpu_hour < 0 or args.budget_s <= 0:
        ap.error("--price_per_gpu_hour must be >= 0 and --budget_s > 0")

    malformed = False
    done = []
    for folder in args.folders:
        runs, errors = read_folder(folder)
        for e in errors:
            print(f"ERROR: {e}")
        malformed |= bool(errors)
        if not runs:
            print(f"== {folder}: no well-formed log")
            continue
        done.append((folder, runs, report(folder, runs, args, errors)))

    if args.previous:
        prev_runs, errors = read_folder(args.previous)
        for e in errors:
            print(f"ERROR (--previous): {e}")
        malformed |= bool(errors)
        if prev_runs:
            prev_time = mean_std_se([r.train_time_s for r in prev_runs])[0]
            prev_hw = {r.hardware for r in prev_runs}
            for folder, runs, s in done:
                note = "" if {r.hardware for r in runs} == prev_hw else " (different hardware: not comparable)"
                print(f"speed-up of {folder} over {args.previous}: {prev_time:.2f} s / {s['time'][0]:.2f} s = "
                      f"{prev_time / s['time'][0]:.3f}x{note}")

    if args.plot:
        plot([(f, r) for f, r, _ in done], args.target, args.plot)

    if args.table and done:
        print()
        rows = quality_rows([(f, r) for f, r, _ in done], args.budget_s, args.price_per_gpu_hour) \
            if args.table == "quality" else table_rows(done, args.table, args.target, args.price_per_gpu_hour)
        print("\n".join(TABLE_HEADERS[args.table] + rows))

    if malformed:
        print("RESULT: malformed log(s) or folder(s): see ERROR lines")
        return 1
    if args.require_pass and not all((s["quality"] if args.track == "quality" else s)["passed"] for _, _, s in done):
        print(f"RESULT: the {args.track} track's check failed (--require_pass)")
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
