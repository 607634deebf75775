#!/usr/bin/env bash
# Set up, index the sample company's documents in corpus/, and show what was indexed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
.venv/bin/ingest corpus/ || true   # a file that fails is reported; the rest is indexed
.venv/bin/ingest list
