#!/usr/bin/env bash
# Creates (or completes) a Python virtual environment with the given pinned packages.
# Idempotent: does nothing when the venv already has exactly those versions.
#
# usage: scripts/setup_venv.sh VENV_DIR NAME==VERSION...
set -euo pipefail
if (($# < 2)); then
  echo "usage: $0 VENV_DIR NAME==VERSION..." >&2
  exit 2
fi
venv=$1
shift
want=("$@")
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
