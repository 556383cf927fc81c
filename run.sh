#!/usr/bin/env bash
# run.sh: install what is missing, then train on every GPU of this machine (or the cpu preset without one).
#
#   bash run.sh                       # train: torchrun over all GPUs, or the cpu preset on the embedded sample
#   bash run.sh --steps 500           # any train_plm.py flag passes through
#   bash run.sh test                  # the test suite (what CI runs)
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
if [ "$NGPU" -gt 0 ]; then
  if ! ls data/reference/reference_train_*.bin >/dev/null 2>&1; then
    if [ -f ../shared/bench/make_reference_shards.py ]; then
      "$PY" ../shared/bench/make_reference_shards.py ../shared/data/proteins data/reference reference 40000000
    else
      echo "run.sh: GPU presets train on data/reference/reference_*.bin; build them or pass --train_files etc." >&2
    fi
  fi
  echo "run.sh: $NGPU GPU(s): torchrun train_plm.py $*"
  exec torchrun --standalone --nproc_per_node="$NGPU" train_plm.py "$@"
fi
ls data/shards/sample_train_*.bin >/dev/null 2>&1 || "$PY" data/prepare.py --sample
echo "run.sh: no GPU: python train_plm.py --preset cpu $*"
exec "$PY" train_plm.py --preset cpu "$@"
