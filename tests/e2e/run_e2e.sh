#!/usr/bin/env bash
# ctest driver for the end-to-end tests: `tandem up` clusters driven with the official `openai`
# client. Needs the bundled model (TANDEM_MODEL) and the test venv (.venv-test, made by
# scripts/setup_test_venv.sh); skipped (exit 77) without them unless TANDEM_REQUIRE_E2E=1.
# Usage: run_e2e.sh TANDEM_BINARY SOURCE_DIR [pytest args...]
set -euo pipefail
export TANDEM_BIN="$1"
src="$2"
shift 2
skip() {
  if [[ "${TANDEM_REQUIRE_E2E:-0}" == 1 ]]; then
    echo "TANDEM_REQUIRE_E2E=1 but $1" >&2
    exit 1
  fi
  echo "SKIP: $1"
  exit 77
}
[[ -n "${TANDEM_MODEL:-}" && -f "${TANDEM_MODEL}" ]] || skip "TANDEM_MODEL is not set to the bundled model"
exec bash "$src/tests/testing/run_pytest.sh" "$src" openai,pytest "$src/tests/e2e" "$@"
