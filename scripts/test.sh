#!/usr/bin/env bash
# Set up (scripts/setup.sh), lint (ruff, mypy strict) and run the whole test suite against real Chroma
# and real models. The browser tests drive Debian's chromium: it is installed here when missing and
# this runs as root (CI does); elsewhere install it yourself or those tests skip, saying why.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing Debian's chromium for the browser tests ..."
  { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; } \
    >.venv/apt.log 2>&1 || { tail -20 .venv/apt.log; echo "chromium install failed" >&2; exit 1; }
fi
export HF_HUB_OFFLINE=1
.venv/bin/ruff check .
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
