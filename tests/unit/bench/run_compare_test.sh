#!/usr/bin/env bash
# ctest driver for compare_test.py (bench/compare.py's arithmetic). Needs pytest from the test
# venv (.venv-test, made by `make test-venv`); without it the test is skipped (exit 77) unless
# TANDEM_REQUIRE_E2E=1.
# Usage: run_compare_test.sh SOURCE_DIR
set -euo pipefail
src="$1"
py="${TANDEM_TEST_VENV:-$src/.venv-test}/bin/python"
if ! "$py" -c "import pytest" >/dev/null 2>&1; then
  if [[ "${TANDEM_REQUIRE_E2E:-0}" == 1 ]]; then
    echo "TANDEM_REQUIRE_E2E=1 but $py cannot import pytest" >&2
    exit 1
  fi
  echo "SKIP: no test venv with pytest at $py"
  exit 77
fi
PYTHONDONTWRITEBYTECODE=1 exec "$py" -m pytest -q -p no:cacheprovider "$src/tests/unit/bench/compare_test.py"
