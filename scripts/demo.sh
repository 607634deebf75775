#!/usr/bin/env bash
# Set up, index corpus/, start the service, ask a sample question and print the cited answer.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
PORT=${RAG_DEMO_PORT:-8000}
QUESTION=${1:-"How many weeks of fully paid parental leave do eligible parents get?"}

.venv/bin/ingest corpus/ || echo "(some files were not indexed; the reasons are listed above)"
# Plain-text logs for a person at a terminal; deployments keep the JSON default.
RAG_LOG_FORMAT=${RAG_LOG_FORMAT:-text} .venv/bin/python -m service --port "$PORT" --log-level warning &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
  curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  sleep 0.5
done
.venv/bin/python scripts/ask.py "$QUESTION" --url "http://127.0.0.1:$PORT"
echo
echo "The service is up at http://127.0.0.1:$PORT (OpenAPI docs at /docs). Press Ctrl-C to stop it."
if [ -t 0 ]; then wait $SERVER; fi
