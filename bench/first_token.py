"""First-token benchmark: how soon a streamed ``/v1/query`` shows the ``local`` generator's first words.

Indexes a folder (corpus/ by default) into a fresh store, starts ``python -m service`` with the
in-process SmolLM2, and streams each question once (after a warm-up), timing from the request to the
``sources`` event, to the first ``delta`` event, and to the final ``answer``. The per-stage
``timings_ms`` of the final answer are averaged too, so a slow first token shows where it went.

    python bench/first_token.py
    python bench/first_token.py --questions 10 --out /tmp/first-token.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from bench.query import QUESTIONS, build_store, load_questions, running_service  # noqa: E402

ROOT = _HERE.parent


def stream_once(client: httpx.Client, question: str) -> dict[str, Any]:
    started = time.perf_counter()
    marks: dict[str, Any] = {}
    event = ""
    body = {"question": question, "stream": True, "generator": "local"}
    with client.stream("POST", "/v1/query", json=body) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
                marks.setdefault(f"{event}_ms", (time.perf_counter() - started) * 1000)
            elif line.startswith("data:") and event == "answer":
                marks["timings"] = json.loads(line[5:]).get("timings_ms") or {}
    marks["total_ms"] = (time.perf_counter() - started) * 1000
    return marks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder", type=Path, default=ROOT / "corpus")
    parser.add_argument("--questions", type=int, default=20)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    questions = load_questions(QUESTIONS)[: args.questions]
    with tempfile.TemporaryDirectory() as tmp:
        chroma = Path(tmp) / "chroma"
        build_store(args.folder, chroma)
        with running_service(chroma, "local", Path(tmp) / "service.log") as url, httpx.Client(
            base_url=url, timeout=300
        ) as client:
            for q in questions[:2]:
                stream_once(client, q)
            runs = [stream_once(client, q) for q in questions]
    answered = [r for r in runs if "delta_ms" in r]
    print(f"{len(runs)} streamed questions, {len(answered)} with generated text "
          f"(others: not covered, no generation)")  # fmt: skip
    for key in ("sources_ms", "delta_ms", "total_ms"):
        values = [r[key] for r in answered if key in r]
        if values:
            p50, p95 = np.percentile(values, 50), np.percentile(values, 95)
            print(f"  {key[:-3]:<8} p50 {p50:7.1f} ms   p95 {p95:7.1f} ms   max {max(values):7.1f} ms")
    stages: dict[str, list[float]] = {}
    for r in answered:
        for name, ms in (r.get("timings") or {}).items():
            stages.setdefault(name, []).append(float(ms))
    print("  stages (timings_ms of the final answer, mean):",
          ", ".join(f"{k} {np.mean(v):.0f}" for k, v in stages.items()))  # fmt: skip
    print("target: first delta within 1000 ms of the request")
    if args.out:
        args.out.write_text(json.dumps(runs, indent=2))


if __name__ == "__main__":
    main()
