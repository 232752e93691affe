#!/usr/bin/env bash
# Creates .venv-test: the Python packages the end-to-end and API-shape tests drive tandem with
# (the official `openai` client and pytest), pinned. Idempotent: does nothing when present.
set -euo pipefail
cd "$(dirname "$0")/.."
exec scripts/setup_venv.sh .venv-test openai==3.51.0 pytest==9.2.0
