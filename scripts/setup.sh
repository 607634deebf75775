#!/usr/bin/env bash
# Create .venv and install ragfirst with its test tools. Safe to rerun: pip skips what is there.
# The first run compiles llama-cpp-python (about 5 minutes on 2 cores); pip caches the wheel.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
log=.venv/install.log
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
echo "installing ragfirst into .venv (log: $log) ..."
{
  .venv/bin/pip install --upgrade pip
  # torch first, by exact version: it is the CPU build on disk; letting a resolver pick pulls CUDA.
  .venv/bin/pip install torch==2.13.0
  .venv/bin/pip install -e '.[dev]'
} >"$log" 2>&1 || { tail -40 "$log"; echo "install failed; see $log" >&2; exit 1; }
