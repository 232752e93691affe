#!/usr/bin/env bash
# ctest driver for openai_shapes_test.py: dumps tandem's response bodies and has the official
# `openai` client parse them. Needs the test venv (.venv-test with openai and pytest; create it
# with: python3 -m venv .venv-test && .venv-test/bin/pip install openai==3.51.0 pytest).
# Without it the test is skipped (exit 77) unless TANDEM_REQUIRE_E2E=1.
# Usage: run_openai_shapes_test.sh DUMP_BINARY SOURCE_DIR
set -euo pipefail
dump="$1"
src="$2"
py="${TANDEM_TEST_VENV:-$src/.venv-test}/bin/python"
if ! "$py" -c "import openai, pytest" >/dev/null 2>&1; then
  if [[ "${TANDEM_REQUIRE_E2E:-0}" == 1 ]]; then
    echo "TANDEM_REQUIRE_E2E=1 but $py cannot import openai and pytest" >&2
    exit 1
  fi
  echo "SKIP: no test venv with openai at $py"
  exit 77
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$dump" "$tmp/shapes.json"
TANDEM_API_SHAPES="$tmp/shapes.json" PYTHONDONTWRITEBYTECODE=1 \
  "$py" -m pytest -q -p no:cacheprovider "$src/tests/unit/api/openai_shapes_test.py"
