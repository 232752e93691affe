#!/usr/bin/env bash
# ctest driver for openai_shapes_test.py: dumps tandem's response bodies and has the official
# `openai` client parse them. Needs the test venv with openai and pytest (tests/testing/run_pytest.sh:
# skipped without it, exit 77, unless TANDEM_REQUIRE_E2E=1).
# Usage: run_openai_shapes_test.sh DUMP_BINARY SOURCE_DIR
set -euo pipefail
dump="$1"
src="$2"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$dump" "$tmp/shapes.json"
# Not exec: the trap removes the dump afterwards.
TANDEM_API_SHAPES="$tmp/shapes.json" bash "$src/tests/testing/run_pytest.sh" "$src" openai,pytest \
  "$src/tests/unit/api/openai_shapes_test.py"
