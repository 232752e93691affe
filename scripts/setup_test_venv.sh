#!/usr/bin/env bash
# Creates .venv-test: the Python packages the end-to-end and API-shape tests drive tandem with
# (the official `openai` client and pytest), pinned. Idempotent: does nothing when present.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-test
want=(openai==3.51.0 pytest==9.2.0)
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
