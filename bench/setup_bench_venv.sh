#!/usr/bin/env bash
# Creates .venv-bench: matplotlib, pinned, for `bench/compare.py plot` (the other subcommands of
# bench/compare.py need only the standard library). Idempotent: does nothing when present.
#
# usage: bench/setup_bench_venv.sh && .venv-bench/bin/python bench/compare.py plot DIR
set -euo pipefail
cd "$(dirname "$0")/.."
exec scripts/setup_venv.sh .venv-bench matplotlib==3.11.2
