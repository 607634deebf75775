#!/usr/bin/env bash
# Set up (scripts/setup.sh), lint (ruff, mypy strict) and run the whole test suite against real Chroma
# and real models.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
.venv/bin/ruff check .
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
