"""Query benchmark: the running service's /v1/search and /v1/query against the bare in-process cost.

Indexes a folder into a fresh temporary Chroma store, starts ``python -m service`` on a free loopback
port against it, and sends a fixed number of requests per cell (cycling over the retrieval questions)
at each concurrency. The bare side is ``embedder.embed_query(q)`` plus one ``store.query(vector, 5)``
in this process on the same store. Prints p50, p95, throughput and errors of both sides with their
ratio, and the per-stage ``timings_ms`` the service reports. Everything stops and is removed at the end.

    python bench/query.py                                   # corpus/, extractive generator
    python bench/query.py --requests 40 --concurrency 1 4 --out /tmp/query-bench.json
    python bench/query.py --generator local                 # the in-process SmolLM2 too (slow)
    python bench/query.py --chroma-path data/chroma         # an existing store, not re-indexed
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Run as a script, this file's folder comes first on sys.path and its names would shadow packages.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from ingest.embed import Embedder  # noqa: E402
from ingest.pipeline import Ingestor  # noqa: E402
from ingest.settings import Settings  # noqa: E402
from ingest.store import open_store  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = ROOT / "tests" / "data" / "retrieval_questions.jsonl"
STAGES = ("embed", "search", "keyword", "fuse", "prompt", "generate", "verify")
ROUTES = ("/v1/search", "/v1/query")
# /v1/search with a metadata filter (a quarter of the sample corpus): its p50 against unfiltered search.
FILTERED = "/v1/search+filter"
FILTER = {"source_prefix": "hr/"}
WARMUP = 3
TOP_K = 5

# One request: takes a question, returns the stage timings the service reported ({} for the bare side).
Call = Callable[[str], dict[str, float]]
CallFactory = Callable[[], AbstractContextManager[Call]]


@dataclass
class Cell:
    """Every request of one (side, route, concurrency) run."""

    side: str
    route: str
    concurrency: int
    latencies_ms: list[float] = field(default_factory=list)
    stages: list[dict[str, float]] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""
    wall_s: float = 0.0

    def p(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    @property
    def rps(self) -> float:
        return len(self.latencies_ms) / self.wall_s if self.wall_s else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "side": self.side, "route": self.route, "concurrency": self.concurrency,
            "ok": len(self.latencies_ms), "errors": self.errors, "first_error": self.first_error,
            "p50_ms": round(self.p(50), 2), "p95_ms": round(self.p(95), 2),
            "rps": round(self.rps, 2), "wall_s": round(self.wall_s, 2),
            "stages_ms": stage_stats(self.stages),
        }  # fmt: skip


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder", type=Path, default=ROOT / "corpus", help="folder to index")
    parser.add_argument("--chroma-path", type=Path, help="use this existing store instead of indexing")
    parser.add_argument("--requests", type=int, default=80, help="requests per cell")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--generator", default="extractive", choices=["extractive", "local"])
    parser.add_argument("--questions", type=Path, default=QUESTIONS)
    parser.add_argument("--out", type=Path, help="also write the figures here as JSON")
    return parser.parse_args()


def load_questions(path: Path) -> list[str]:
    return [json.loads(line)["question"] for line in path.read_text().splitlines() if line.strip()]


def store_settings(chroma_path: Path) -> Settings:
    return Settings(chroma_path=chroma_path, chroma_url=None)


def build_store(folder: Path, chroma_path: Path) -> float:
    """Index ``folder`` into a new store at ``chroma_path``; returns the seconds it took."""
    started = time.perf_counter()
    report = Ingestor(store_settings(chroma_path)).ingest_paths([folder])
    seconds = time.perf_counter() - started
    skipped, failed = report.count("skipped"), report.count("failed")
    print(f"indexed {folder}: {report.count('added')} files, {report.embedded_chunks} chunks in "
          f"{seconds:.1f} s (skipped {skipped}, failed {failed})")  # fmt: skip
    return seconds


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_service(chroma_path: Path, generator: str, log: Path) -> Iterator[str]:
    """``python -m service`` on an embedded store at ``chroma_path``; yields its base URL."""
    env = {**os.environ, "RAG_CHROMA_PATH": str(chroma_path), "RAG_GENERATOR": generator,
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}  # fmt: skip
    env.pop("RAG_CHROMA_URL", None)
    with service_with_env(env, log) as url:
        yield url


@contextmanager
def service_with_env(env: dict[str, str], log: Path) -> Iterator[str]:
    """``python -m service`` on a free loopback port with ``env``; yields its base URL, terminates it
    at the end."""
    port = free_port()
    command = [sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(port),
               "--log-level", "warning"]  # fmt: skip
    with log.open("wb") as sink:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_healthy(url, proc, log)
            yield url
        finally:
            stop(proc)


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_healthy(
    url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 90.0, path: str = "/healthz"
) -> None:
    """Until ``url + path`` answers 200; exits the benchmark, with the log's tail, if it never does."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{proc.args} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}{path}", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    sys.exit(f"nothing answered {url}{path} within {timeout_s:.0f} s:\n{log.read_text()[-3000:]}")


def http_calls(url: str, route: str, generator: str) -> CallFactory:
    """Per worker: one ``httpx.Client``, posting each question to ``route``."""

    @contextmanager
    def factory() -> Iterator[Call]:
        with httpx.Client(base_url=url, timeout=300.0) as client:

            def call(question: str) -> dict[str, float]:
                if route == "/v1/search":
                    body: dict[str, Any] = {"query": question, "top_k": TOP_K}
                elif route == FILTERED:
                    body = {"query": question, "top_k": TOP_K, "filters": FILTER}
                else:
                    body = {"question": question, "generator": generator}
                response = client.post(route.split("+")[0], json=body)
                response.raise_for_status()
                return dict(response.json().get("timings_ms") or {})

            yield call

    return factory


def bare_calls(embedder: Embedder, settings: Settings) -> CallFactory:
    """Per worker: the shared embedder and store, one embedding and one Chroma query per question."""
    store = open_store(settings, create=False)

    @contextmanager
    def factory() -> Iterator[Call]:
        def call(question: str) -> dict[str, float]:
            store.query(embedder.embed_query(question), TOP_K)
            return {}

        yield call

    return factory


def run_cell(cell: Cell, calls: CallFactory, questions: list[str], requests: int) -> Cell:
    """Send ``requests`` questions through ``cell.concurrency`` threads; fills in ``cell``."""
    todo: queue.SimpleQueue[int] = queue.SimpleQueue()
    for i in range(requests):
        todo.put(i)
    lock = threading.Lock()

    def worker() -> None:
        with calls() as call:
            while True:
                try:
                    i = todo.get_nowait()
                except queue.Empty:
                    return
                started = time.perf_counter()
                try:
                    stages = call(questions[i % len(questions)])
                except Exception as exc:  # an error is a figure of the cell, not the end of the run
                    with lock:
                        cell.errors += 1
                        cell.first_error = cell.first_error or f"{type(exc).__name__}: {exc}"[:200]
                    continue
                elapsed_ms = (time.perf_counter() - started) * 1000
                with lock:
                    cell.latencies_ms.append(elapsed_ms)
                    cell.stages.append(stages)

    threads = [threading.Thread(target=worker) for _ in range(cell.concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cell.wall_s = time.perf_counter() - started
    return cell


def warm_up(factories: dict[str, CallFactory], questions: list[str]) -> None:
    """A few requests of each kind: loads models, opens collections, builds the BM25 index."""
    for name, calls in factories.items():
        started = time.perf_counter()
        cell = run_cell(Cell("warmup", name, 1), calls, questions, WARMUP)
        if cell.errors:
            sys.exit(f"warm-up of {name} failed: {cell.first_error}")
        print(f"warm-up {name:<11} {WARMUP} requests in {time.perf_counter() - started:.1f} s")


def stage_stats(stages: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Mean, p50 and p95 of each stage the responses reported."""
    out = {}
    for name in STAGES:
        values = [s[name] for s in stages if name in s]
        if values:
            out[name] = {"mean": round(float(np.mean(values)), 2),
                         "p50": round(float(np.percentile(values, 50)), 2),
                         "p95": round(float(np.percentile(values, 95)), 2)}  # fmt: skip
    return out


def print_table(cells: list[Cell]) -> None:
    bare = {c.concurrency: c for c in cells if c.side == "bare"}
    print()
    print(f"{'cell':<17} {'bare p50':>9} {'p95':>7} {'svc p50':>9} {'p95':>7} {'p50 ratio':>9} "
          f"{'bare rps':>9} {'svc rps':>8} {'svc/bare':>8} {'errors':>7}")  # fmt: skip
    for cell in cells:
        if cell.side == "bare":
            continue
        base = bare[cell.concurrency]
        ratio = cell.p(50) / base.p(50) if base.latencies_ms else float("nan")
        share = 100 * cell.rps / base.rps if base.rps else float("nan")
        print(f"{cell.route + ' c=' + str(cell.concurrency):<17} {base.p(50):>7.1f}ms {base.p(95):>5.1f}ms "
              f"{cell.p(50):>7.1f}ms {cell.p(95):>5.1f}ms {ratio:>8.1f}x {base.rps:>9.1f} {cell.rps:>8.1f} "
              f"{share:>7.0f}% {cell.errors:>3}/{base.errors}")  # fmt: skip
        if cell.first_error:
            print(f"  first error: {cell.first_error}")
    print("(bare = embed_query + store.query(k=5) in-process; ratio = service p50 / bare p50;"
          " svc/bare = service throughput as % of bare; errors = service/bare)")  # fmt: skip
    by = {(c.route, c.concurrency): c for c in cells}
    for (route, concurrency), cell in by.items():
        plain = by.get(("/v1/search", concurrency))
        if route == FILTERED and plain and plain.latencies_ms:
            print(f"filtered search c={concurrency}: p50 {cell.p(50):.1f} ms vs unfiltered "
                  f"{plain.p(50):.1f} ms = {cell.p(50) / plain.p(50):.2f}x  (filters {FILTER}; "
                  "target < 10x)")  # fmt: skip


def print_stages(cells: list[Cell]) -> None:
    for cell in cells:
        stats = stage_stats(cell.stages)
        if not stats:
            continue
        print(f"\n{cell.route} c={cell.concurrency} stages (timings_ms)   mean     p50     p95")
        for name, s in stats.items():
            print(f"  {name:<34} {s['mean']:>6.1f}  {s['p50']:>6.1f}  {s['p95']:>6.1f}")
        handler = [sum(s.get(n, 0.0) for n in STAGES) for s in cell.stages]
        outside = [lat - h for lat, h in zip(cell.latencies_ms, handler, strict=True)]
        print(f"  {'outside the stages (HTTP, queue)':<34} {np.mean(outside):>6.1f}  "
              f"{np.percentile(outside, 50):>6.1f}  {np.percentile(outside, 95):>6.1f}")  # fmt: skip


def measure(args: argparse.Namespace, chroma_path: Path, log: Path, questions: list[str]) -> list[Cell]:
    """Warm up, then for each concurrency: the bare cell, then each service route."""
    settings = store_settings(chroma_path)
    embedder = Embedder(settings)
    bare = bare_calls(embedder, settings)
    cells = []
    with running_service(chroma_path, args.generator, log) as url:
        routes = {route: http_calls(url, route, args.generator) for route in (*ROUTES, FILTERED)}
        warm_up({"bare": bare, **routes}, questions)
        for concurrency in args.concurrency:
            cells.append(run_cell(Cell("bare", "bare", concurrency), bare, questions, args.requests))
            for route, calls in routes.items():
                cell = Cell("service", route, concurrency)
                cells.append(run_cell(cell, calls, questions, args.requests))
                print(f"measured {route} c={concurrency}: {cell.wall_s:.1f} s")
    return cells


def main() -> None:
    args = parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    questions = load_questions(args.questions)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ragfirst-bench-") as tmp:
        chroma_path = args.chroma_path or Path(tmp) / "chroma"
        ingest_s = 0.0 if args.chroma_path else build_store(args.folder, chroma_path)
        cells = measure(args, chroma_path, Path(tmp) / "service.log", questions)
    print_table(cells)
    print_stages(cells)
    total_s = time.perf_counter() - started
    print(f"\n{len(questions)} questions, {args.requests} requests per cell, generator {args.generator}, "
          f"total {total_s:.0f} s")  # fmt: skip
    if args.out:
        figures = {
            "folder": str(args.folder), "chroma_path": str(args.chroma_path or ""),
            "generator": args.generator, "requests": args.requests, "concurrency": args.concurrency,
            "questions": len(questions),
            "ingest_s": round(ingest_s, 2), "total_s": round(total_s, 2),
            "cells": [c.summary() for c in cells],
        }  # fmt: skip
        args.out.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
