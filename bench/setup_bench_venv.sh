#!/usr/bin/env bash
# Creates .venv-bench: matplotlib, pinned, for `bench/compare.py plot` (the other subcommands of
# bench/compare.py need only the standard library). Idempotent: does nothing when present.
#
# usage: bench/setup_bench_venv.sh && .venv-bench/bin/python bench/compare.py plot DIR
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-bench
want=(matplotlib==3.11.2)
if [[ -x $venv/bin/python ]] && $venv/bin/python - "${want[@]}" <<'PY' 2>/dev/null; then
import sys
from importlib.metadata import version
sys.exit(0 if all(version(n) == v for n, v in (w.split("==") for w in sys.argv[1:])) else 1)
PY
  echo "setup: $venv has ${want[*]}" >&2
  exit 0
fi
echo "setup: creating $venv with ${want[*]}" >&2
python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check "${want[@]}"
