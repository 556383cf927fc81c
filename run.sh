#!/usr/bin/env bash
# run.sh: install what is missing, then train on every GPU of this machine (or the cpu preset without one).
#
#   bash run.sh                       # train: torchrun over all GPUs, or the cpu preset on the embedded sample
#   bash run.sh --steps 500           # any train_plm.py flag passes through
#   bash run.sh test                  # the test suite (what CI runs)
#   bash run.sh experiments FOLDER    # one run per FOLDER/*.args file (flag overrides), then a summary table
#
# Experiment files (records/README.md, "Experiment batches"): one `--flag value` pair per line (several per
# line are fine), '#' starts a comment, blank lines are ignored, no shell quoting or expansion (a pair of
# quotes around a whole value is stripped). Each file runs as `train <its flags> --run_id <file stem>` with the
# same launcher as a plain `bash run.sh`; a failed run does not stop the batch; the exit status is 1 when
# any run failed.
#
# Each requirement is checked on its own and installed only if it fails to import; torch is never
# reinstalled when it imports, so a working CUDA build (e.g. on a GPU box without a registry) is kept.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}

install_missing() {  # $1: requirements file; module name = package name with '-' -> '_'
  local line name
  while read -r line; do
    line=${line%%#*}; line=${line// /}
    [ -z "$line" ] && continue
    name=${line%%[=<>!~]*}
    [ "$name" = scikit-learn ] && mod=sklearn || mod=${name//-/_}
    if ! "$PY" -c "import $mod" 2>/dev/null; then
      echo "run.sh: installing $line"
      "$PY" -m pip install -q "$line"
    fi
  done < "$1"
}

install_missing requirements.txt
if [ "${1:-}" = test ]; then
  shift
  install_missing requirements-test.txt
  exec "$PY" -m pytest -q tests "$@"
fi

NGPU=$("$PY" -c "import torch; print(torch.cuda.device_count())")

train() {  # [exec] ARGS: torchrun over every GPU, or the cpu preset without one; `exec` replaces this shell
  local EXEC=
  if [ "${1:-}" = exec ]; then EXEC=exec; shift; fi
  if [ "$NGPU" -gt 0 ]; then
    if ! ls data/reference/reference_train_*.bin >/dev/null 2>&1; then
      if [ -f ../shared/bench/make_reference_shards.py ]; then
        "$PY" ../shared/bench/make_reference_shards.py ../shared/data/proteins data/reference reference 40000000
      else
        echo "run.sh: GPU presets train on data/reference/reference_*.bin; build them or pass --train_files etc." >&2
      fi
    fi
    echo "run.sh: $NGPU GPU(s): torchrun train_plm.py $*"
    $EXEC torchrun --standalone --nproc_per_node="$NGPU" train_plm.py "$@"
    return
  fi
  ls data/shards/sample_train_*.bin >/dev/null 2>&1 || "$PY" data/prepare.py --sample
  echo "run.sh: no GPU: python train_plm.py --preset cpu $*"
  $EXEC "$PY" train_plm.py --preset cpu "$@"
}

if [ "${1:-}" = experiments ]; then
  if [ -z "${2:-}" ]; then echo "usage: bash run.sh experiments FOLDER   (runs every FOLDER/*.args)" >&2; exit 2; fi
  dir=$2
  if [ ! -d "$dir" ]; then echo "run.sh: experiments: $dir is not a folder" >&2; exit 1; fi
  shopt -s nullglob
  files=("$dir"/*.args)
  shopt -u nullglob
  if [ ${#files[@]} -eq 0 ]; then echo "run.sh: no *.args file in $dir" >&2; exit 1; fi
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  interrupted=
  trap 'interrupted=1' INT  # Ctrl-C: the current run checkpoints and stops (train_plm.py), the batch stops
  for f in "${files[@]}"; do
    stem=$(basename "$f" .args)
    args=()
    while IFS= read -r line || [ -n "$line" ]; do
      line=${line%%#*}
      read -ra words <<< "$line"  # split on whitespace; no globbing, no quote removal
      for w in "${words[@]}"; do
        if [ ${#w} -ge 2 ] && { [[ $w == \'*\' ]] || [[ $w == \"*\" ]]; }; then w=${w:1:${#w}-2}; fi
        args+=("$w")
      done
    done < "$f"
    echo "run.sh: experiment $stem ($f): ${args[*]}"
    set +e
    (train "${args[@]}" --run_id "$stem") 2>&1 | tee -i "$work/$stem.out"
    rc=${PIPESTATUS[0]}
    set -e
    echo "$stem $rc" >> "$work/status"
    if [ -n "$interrupted" ]; then echo "run.sh: interrupted: the batch stops after $stem" >&2; break; fi
  done
  "$PY" - "$work" <<'PYEOF'
import json, sys
from pathlib import Path
work = Path(sys.argv[1])
rows, failed = [], 0
for line in (work / "status").read_text().split("\n"):
    if not line.strip():
        continue
    stem, rc = line.rsplit(" ", 1)
    results = [l[len("RESULT "):] for l in (work / f"{stem}.out").read_text(errors="replace").splitlines()
               if l.startswith("RESULT ")]
    if rc != "0" or not results:
        failed += 1
        rows.append((stem, f"FAILED (exit {rc})" if rc != "0" else "FAILED (exit 0, no RESULT line)", "", ""))
        continue
    r = json.loads(results[-1])
    rows.append((stem, f"{r['val_loss']:.5f}", f"{r['train_time_s']:.2f}", f"{r.get('tokens_per_s', '')}"))
head = ("run_id", "val_loss", "train_time_s", "tokens_per_s")
w = [max(len(str(x[i])) for x in rows + [head]) for i in range(4)]
print(f"\nrun.sh: experiments summary ({len(rows) - failed} finished, {failed} failed)")
for x in [head, tuple("-" * n for n in w)] + rows:
    print("  ".join(str(v).ljust(n) for v, n in zip(x, w)).rstrip())
sys.exit(1 if failed else 0)
PYEOF
  exit $?
fi

train exec "$@"
