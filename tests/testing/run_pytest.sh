#!/usr/bin/env bash
# The one ctest driver for pytest suites: runs PATH with the test venv's python
# ($TANDEM_TEST_VENV, default SOURCE_DIR/.venv-test, made by scripts/setup_test_venv.sh) when it
# can import MODULES (comma-separated). Without such a venv the test is skipped (exit 77), or
# fails (exit 1) under TANDEM_REQUIRE_E2E=1, as CI sets it.
# Usage: run_pytest.sh SOURCE_DIR MODULES PATH [pytest args...]
set -euo pipefail
src="$1"
modules="$2"
path="$3"
shift 3
py="${TANDEM_TEST_VENV:-$src/.venv-test}/bin/python"
if ! "$py" -c "import $modules" >/dev/null 2>&1; then
  if [[ "${TANDEM_REQUIRE_E2E:-0}" == 1 ]]; then
    echo "TANDEM_REQUIRE_E2E=1 but $py cannot import $modules" >&2
    exit 1
  fi
  echo "SKIP: no test venv with $modules at $py (scripts/setup_test_venv.sh makes it)"
  exit 77
fi
PYTHONDONTWRITEBYTECODE=1 exec "$py" -m pytest -q -p no:cacheprovider "$path" "$@"
