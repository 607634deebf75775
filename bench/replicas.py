"""Replica benchmark: how ragfirst scales past one process on one Chroma server.

Starts ``chroma run`` on a free loopback port with a temporary folder, indexes a folder into it once
with the ``ingest`` command (and once more into a temporary embedded store, for the store-kind
figure), then measures with the same fixed number of requests per cell, cycling over the retrieval
questions, after a few warm-up requests per process:

* ``/v1/search`` and ``/v1/query`` (extractive) at N concurrent clients against (a) one service
  process, (b) two service processes on two ports, clients spread round-robin, and (c) one process
  with ``--workers 2``; prints (b)/(a) and (c)/(a);
* ``/v1/search`` p50 at one client against the embedded store and against the Chroma server;
* cross-replica freshness: a new Markdown document uploaded through replica A, replica B polled until
  its ``/v1/search`` returns it: first by the dense retriever (Chroma), then by the keyword one
  (B's BM25 index, refreshed by a revision check at most every ``REVISION_CHECK_S``);
* resident memory of every process after its run, and each replica's start-up time (process start
  to ``/healthz``, and to the first ``/v1/search`` answered, which loads the embedder);
* where the machine's CPU went during each cell: service processes, Chroma server, this client, and
  anything else running (which would distort the figures).

Everything listens on 127.0.0.1, stops by itself and is removed at the end.

    python bench/replicas.py
    python bench/replicas.py --requests 40 --no-workers --out /tmp/replicas.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Run as a script, this file's folder comes first on sys.path and bench/ingest.py would shadow the
# ingest package; the repository root goes there instead, so that bench.query imports.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import httpx  # noqa: E402

from bench.query import (  # noqa: E402
    QUESTIONS,
    ROUTES,
    TOP_K,
    CallFactory,
    Cell,
    free_port,
    http_calls,
    load_questions,
    run_cell,
    stop,
    wait_healthy,
)
from ingest.types import document_id  # noqa: E402
from service.retrieve import REVISION_CHECK_S, RRF_K  # noqa: E402

ROOT = _HERE.parent
BIN = Path(sys.executable).parent
GENERATOR = "extractive"
CLK_TCK = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1
FRESH_TOP_K = 20  # wide enough that a dense-only hit is not pushed out by chunks both retrievers found
FRESH_TIMEOUT_S = 15.0
FRESH_POLL_S = 0.02
# A chunk in one ranking scores at most 1/(RRF_K+1); in both, at least 2/(RRF_K+pool) which is more.
ONE_RANKING_MAX = 1.0 / (RRF_K + 1)


# --------------------------------------------------------------------------------------- processes


def proc_stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of a live process, from /proc/PID/stat; None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = raw[raw.rfind(")") + 2 :].split()  # the command name may hold spaces and parentheses
    return int(rest[1]), (int(rest[11]) + int(rest[12])) / CLK_TCK


def process_tree(root: int) -> list[int]:
    """``root`` and all its live descendants (uvicorn's workers, chroma's children)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := proc_stat(int(entry.name))):
            parents.setdefault(stat[0], []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(parents.get(pid, []))
    return out


def tree_cpu_s(root: int) -> float:
    return sum(s[1] for pid in process_tree(root) if (s := proc_stat(pid)))


def rss_mb(pid: int) -> float:
    """VmRSS of a live process in MiB (nan when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def machine_busy_s() -> float:
    """CPU seconds all cores have spent busy since boot (/proc/stat, everything but idle and iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLK_TCK


def self_cpu_s() -> float:
    times = os.times()
    return times.user + times.system


@dataclass
class Replica:
    """One ``python -m service`` (with its uvicorn workers, if any) or the Chroma server."""

    name: str
    proc: subprocess.Popen[bytes]
    url: str
    log: Path
    workers: int = 1
    ready_s: float = float("nan")  # process start to /healthz answering
    first_search_s: float = float("nan")  # process start to the first /v1/search answered
    rss: dict[str, float] = field(default_factory=dict)

    def measure_rss(self) -> dict[str, float]:
        """RSS of the process and of each descendant (uvicorn workers), in MiB."""
        tree = process_tree(self.proc.pid)
        self.rss = {("main" if pid == self.proc.pid else f"child {pid}"): round(rss_mb(pid), 1)
                    for pid in tree}  # fmt: skip
        return self.rss

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name, "url": self.url, "workers": self.workers,
            "ready_s": round(self.ready_s, 2), "first_search_s": round(self.first_search_s, 2),
            "rss_mb": self.rss, "rss_total_mb": round(sum(self.rss.values()), 1),
        }  # fmt: skip


@contextmanager
def chroma_server(path: Path, log: Path) -> Iterator[Replica]:
    """``chroma run --path PATH`` on a free loopback port until the block ends."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [str(BIN / "chroma"), "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)]
    started = time.perf_counter()
    with log.open("wb") as sink:
        proc = subprocess.Popen(command, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT)
        try:
            wait_healthy(url, proc, log, timeout_s=60.0, path="/api/v2/heartbeat")
            server = Replica("chroma server", proc, url, log, ready_s=time.perf_counter() - started)
            print(f"chroma server {url} up in {server.ready_s:.1f} s")
            yield server
        finally:
            stop(proc)


def store_env(chroma_url: str | None, chroma_path: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAG_CHROMA_URL", "RAG_CHROMA_PATH", "RAG_API_KEYS", "RAG_COLLECTION")}  # fmt: skip
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", RAG_GENERATOR=GENERATOR)
    if chroma_url:
        env["RAG_CHROMA_URL"] = chroma_url
    if chroma_path:
        env["RAG_CHROMA_PATH"] = str(chroma_path)
    return env


def ingest(folder: Path, env: dict[str, str], label: str) -> float:
    """The ``ingest`` command on ``folder`` (its own process, so this one never loads the model)."""
    started = time.perf_counter()
    done = subprocess.run([str(BIN / "ingest"), str(folder)], cwd=ROOT, env=env, capture_output=True,
                          text=True, check=False)  # fmt: skip
    seconds = time.perf_counter() - started
    summary = [line for line in done.stdout.splitlines() if "added" in line or "chunks embedded" in line]
    if done.returncode not in (0, 1):  # 1: some file failed, the others are indexed
        sys.exit(
            f"ingest into {label} failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    print(f"indexed {folder} into {label} in {seconds:.1f} s: {' '.join(s.strip() for s in summary)}")
    return seconds


@contextmanager
def service(name: str, env: dict[str, str], tmp: Path, question: str, workers: int = 1) -> Iterator[Replica]:
    """``python -m service`` on a free port; timed to /healthz and to its first /v1/search answer."""
    port = free_port()
    log = tmp / f"{name.replace(' ', '-')}.log"
    command = [sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(port),
               "--workers", str(workers), "--log-level", "warning"]  # fmt: skip
    with log.open("wb") as sink:
        started = time.perf_counter()
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT)
        try:
            replica = Replica(name, proc, f"http://127.0.0.1:{port}", log, workers)
            wait_healthy(replica.url, proc, log, timeout_s=120.0)
            replica.ready_s = time.perf_counter() - started
            response = httpx.post(f"{replica.url}/v1/search", json={"query": question, "top_k": TOP_K},
                                  timeout=120.0)  # fmt: skip
            if response.status_code != 200:
                sys.exit(f"{name}: first /v1/search answered {response.status_code}: {response.text[:500]}")
            replica.first_search_s = time.perf_counter() - started
            print(f"{name} {replica.url} (--workers {workers}): /healthz after {replica.ready_s:.1f} s, "
                  f"first /v1/search after {replica.first_search_s:.1f} s")  # fmt: skip
            yield replica
        finally:
            stop(proc)


# ------------------------------------------------------------------------------------------- cells


def spread(factories: list[CallFactory]) -> CallFactory:
    """Client i (one thread, one connection) talks to replica i mod n: round-robin over clients."""
    lock = threading.Lock()
    count = [0]

    @contextmanager
    def factory() -> Iterator[Any]:
        with lock:
            i = count[0]
            count[0] += 1
        with factories[i % len(factories)]() as call:
            yield call

    return factory


def route_calls(replicas: list[Replica], route: str) -> CallFactory:
    return spread([http_calls(r.url, route, GENERATOR) for r in replicas])


@dataclass
class Measured:
    """A cell, with the CPU each party spent while it ran."""

    config: str
    cell: Cell
    cpu_s: dict[str, float]

    def summary(self) -> dict[str, Any]:
        wall = self.cell.wall_s or float("nan")
        share = {k: round(100 * v / (wall * NCPU), 1) for k, v in self.cpu_s.items()}
        return {"config": self.config, **self.cell.summary(),
                "cpu_s": {k: round(v, 2) for k, v in self.cpu_s.items()},
                "cpu_pct_of_machine": share}  # fmt: skip


def measure(
    config: str, route: str, concurrency: int, replicas: list[Replica], server: Replica | None,
    questions: list[str], requests: int,
) -> Measured:  # fmt: skip
    """One cell, with CPU seconds of the service processes, the Chroma server, this client and the rest."""

    def snapshot() -> dict[str, float]:
        out = {"service": sum(tree_cpu_s(r.proc.pid) for r in replicas),
               "chroma": tree_cpu_s(server.proc.pid) if server else 0.0,
               "client": self_cpu_s(), "machine": machine_busy_s()}  # fmt: skip
        return out

    before = snapshot()
    cell = run_cell(Cell(config, route, concurrency), route_calls(replicas, route), questions, requests)
    after = snapshot()
    cpu = {k: after[k] - before[k] for k in before}
    cpu["other"] = max(0.0, cpu.pop("machine") - cpu["service"] - cpu["chroma"] - cpu["client"])
    m = Measured(config, cell, cpu)
    share = m.summary()["cpu_pct_of_machine"]
    print(f"measured {config:<12} {route:<10} c={concurrency}: p50 {cell.p(50):6.1f} ms, "
          f"{cell.rps:6.1f} req/s, {cell.errors} errors; CPU % of {NCPU} cores: "
          + ", ".join(f"{k} {v:.0f}" for k, v in share.items()))  # fmt: skip
    if cell.first_error:
        print(f"  first error: {cell.first_error}")
    return m


def warm(replica: Replica, questions: list[str], concurrency: int, routes: tuple[str, ...] = ROUTES) -> None:
    """Warm-up requests on one process (each uvicorn worker, by luck of accept, when it has several):
    searches for the lazily loaded parts, and every question once per worker for /v1/query, so that
    each process's sentence-embedding cache is as warm as the others' when its cells start."""
    for route in routes:
        started = time.perf_counter()
        per_worker = len(questions) if route == "/v1/query" else 2 * concurrency
        n = per_worker * replica.workers
        cell = run_cell(Cell("warmup", route, concurrency), route_calls([replica], route), questions, n)
        if cell.errors:
            sys.exit(f"warm-up of {replica.name} {route} failed: {cell.first_error}")
        print(f"warm-up {replica.name} {route}: {n} requests in {time.perf_counter() - started:.1f} s")


# --------------------------------------------------------------------------------------- freshness


def fresh_document(token: str) -> tuple[str, bytes, str]:
    """(file name, Markdown, query) of a document nothing else in a corpus answers."""
    text = (f"# Rooftop beehive {token}\n\n"
            f"The rooftop beehive {token} above the Lisbon office is inspected by the facilities team "
            f"every second Thursday at 07:30. Beekeeping suits for hive {token} are kept in locker 14 "
            "on the fourth floor, and honey is shared out in the canteen each September.\n")  # fmt: skip
    return f"beehive-{token}.md", text.encode(), f"When is the rooftop beehive {token} inspected?"


@dataclass
class Poll:
    """One /v1/search on replica B: when it was answered, and how it ranked the new document."""

    received: float
    score: float | None  # best fused score of the new document; None: not among the results
    keyword_ms: float  # the keyword stage of that request (it includes a BM25 rebuild when one ran)


def poll_until(stop: threading.Event, url: str, query: str, name: str, polls: list[Poll]) -> None:
    """Steady traffic on B: search for ``query`` every FRESH_POLL_S until ``stop`` is set."""
    with httpx.Client(base_url=url, timeout=60.0) as client:
        while not stop.is_set():
            response = client.post("/v1/search", json={"query": query, "top_k": FRESH_TOP_K})
            received = time.perf_counter()
            response.raise_for_status()
            body = response.json()
            scores = [r["score"] for r in body["results"] if r["source"] == name]
            polls.append(
                Poll(received, max(scores) if scores else None, body["timings_ms"].get("keyword", 0))
            )
            stop.wait(FRESH_POLL_S)


def freshness(a: Replica, b: Replica, repeats: int) -> list[dict[str, float]]:
    """Upload through A while B answers steady traffic: seconds from A's upload response to the first
    answer of B that holds the document (dense: Chroma has it) and that ranks it by keyword too (B's
    BM25 index was rebuilt). A fused score above 1/(RRF_K+1) means both retrievers found it."""
    trials = []
    with httpx.Client(base_url=a.url, timeout=60.0) as client:
        for i in range(repeats):
            name, data, query = fresh_document("qz" + uuid.uuid4().hex[:10])
            polls: list[Poll] = []
            stop = threading.Event()
            poller = threading.Thread(target=poll_until, args=(stop, b.url, query, name, polls))
            poller.start()
            try:
                # Traffic first, so that B's last revision check falls at a random point of its cycle.
                time.sleep(random.uniform(0.5, 0.5 + REVISION_CHECK_S))
                t0 = time.perf_counter()
                upload = client.post("/v1/documents", files={"files": (name, data, "text/markdown")},
                                     data={"collection": "default"})  # fmt: skip
                t1 = time.perf_counter()
                upload.raise_for_status()
                outcome = upload.json()["files"][0]
                if outcome["outcome"] != "added":
                    sys.exit(f"upload of {name} through {a.name}: {outcome}")
                while time.perf_counter() - t1 < FRESH_TIMEOUT_S and poller.is_alive():
                    if any(p.score is not None and p.score > ONE_RANKING_MAX + 1e-9 for p in polls):
                        break
                    time.sleep(FRESH_POLL_S / 2)
            finally:
                stop.set()
                poller.join()
            hits = [p for p in polls if p.score is not None]
            both = [p for p in hits if p.score is not None and p.score > ONE_RANKING_MAX + 1e-9]
            trial = {
                "upload_ms": round((t1 - t0) * 1000, 1),
                "dense_s": round(hits[0].received - t1, 3) if hits else float("nan"),
                "keyword_s": round(both[0].received - t1, 3) if both else float("nan"),
                "dense_only_answers": len(hits) - len(both),
                "rebuild_ms": round(both[0].keyword_ms, 1) if both else float("nan"),
                "polls_after_upload": sum(p.received > t1 for p in polls),
            }  # fmt: skip
            trials.append(trial)
            print(f"freshness {i + 1}/{repeats}: upload via {a.name} {trial['upload_ms']:.0f} ms; {b.name} "
                  f"dense hit after {trial['dense_s'] * 1000:.0f} ms, keyword hit after "
                  f"{trial['keyword_s'] * 1000:.0f} ms ({trial['dense_only_answers']} dense-only answers "
                  f"between, keyword stage of that answer {trial['rebuild_ms']:.0f} ms)")  # fmt: skip
            client.delete(f"/v1/documents/{document_id(name)}").raise_for_status()
    return trials


def med_max(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if not math.isnan(v)]
    return (statistics.median(values), max(values)) if values else (float("nan"), float("nan"))


# ------------------------------------------------------------------------------------------ report


def no_nan(value: Any) -> Any:
    """``value`` with every NaN as None, so that the file is strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: no_nan(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [no_nan(v) for v in value]
    return value


def fmt_ratio(x: float, y: float) -> str:
    return f"{y / x:.2f}x" if x and not math.isnan(x) and not math.isnan(y) else "-"


def print_tables(
    cells: list[Measured], replicas: list[Replica], trials: list[dict[str, float]], args: argparse.Namespace
) -> None:
    by = {(m.config, m.cell.route, m.cell.concurrency): m.cell for m in cells}
    configs = [c for c in ("1 process", "2 processes", "--workers 2") if any(m.config == c for m in cells)]
    c = args.concurrency
    print(f"\n{c} clients, {args.requests} requests per cell, generator {GENERATOR}; ratio = vs 1 process")
    header = f"{'route':<11} {'figure':<8}" + "".join(f" {name:>12}" for name in configs)
    header += "".join(f" {'ratio ' + str(i + 2):>9}" for i in range(len(configs) - 1))
    print(header.replace("ratio 2", "(b)/(a)").replace("ratio 3", "(c)/(a)"))
    for route in ROUTES:
        row_cells = [by[(name, route, c)] for name in configs]
        rows = {"p50": [x.p(50) for x in row_cells], "p95": [x.p(95) for x in row_cells],
                "req/s": [x.rps for x in row_cells]}  # fmt: skip
        for label, values in rows.items():
            line = f"{route if label == 'p50' else '':<11} {label:<8}"
            line += "".join(f" {v:>10.1f}{'ms' if label != 'req/s' else '':<2}" for v in values)
            print(line + "".join(f" {fmt_ratio(values[0], v):>9}" for v in values[1:]))
        print(f"{'':<11} {'errors':<8}" + "".join(f" {x.errors:>12}" for x in row_cells))

    print(f"\nCPU during each cell, % of {NCPU} cores   service  chroma  client  other")
    for m in cells:
        share = m.summary()["cpu_pct_of_machine"]
        print(f"  {m.config:<12} {m.cell.route:<10} c={m.cell.concurrency:<3}    {share['service']:>6.0f}  "
              f"{share['chroma']:>6.0f}  {share['client']:>6.0f}  {share['other']:>5.0f}")  # fmt: skip

    emb, srv = by.get(("embedded", "/v1/search", 1)), by.get(("1 process", "/v1/search", 1))
    if emb and srv:
        print(f"\nstore kind, /v1/search 1 client  {'embedded':>9} {'server':>9} {'server/embedded':>16}")
        print(f"  p50                             {emb.p(50):>7.1f}ms {srv.p(50):>7.1f}ms "
              f"{fmt_ratio(emb.p(50), srv.p(50)):>16}")  # fmt: skip
        print(f"  p95                             {emb.p(95):>7.1f}ms {srv.p(95):>7.1f}ms "
              f"{fmt_ratio(emb.p(95), srv.p(95)):>16}")  # fmt: skip

    if trials:
        dense, keyword = med_max([t["dense_s"] for t in trials]), med_max([t["keyword_s"] for t in trials])
        upload = med_max([t["upload_ms"] for t in trials])
        print(f"\nfreshness, upload via A -> B's /v1/search ({len(trials)} times)   median      max")
        print(f"  upload request (A)                                {upload[0]:>6.0f}ms {upload[1]:>6.0f}ms")
        print(f"  B's first hit (dense, Chroma server)              {dense[0] * 1000:>6.0f}ms "
              f"{dense[1] * 1000:>6.0f}ms")  # fmt: skip
        label = f"B's keyword hit (BM25 rebuilt, check every {REVISION_CHECK_S:g} s)"
        print(f"  {label:<48}  {keyword[0] * 1000:>6.0f}ms "
              f"{keyword[1] * 1000:>6.0f}ms")  # fmt: skip
        rebuild = med_max([t["rebuild_ms"] for t in trials])
        print(
            f"  B's keyword stage in that answer (BM25 rebuild)   {rebuild[0]:>6.0f}ms {rebuild[1]:>6.0f}ms"
        )

    print(f"\n{'process':<24} {'RSS MiB':>9} {'/healthz':>9} {'1st search':>11}")
    for r in replicas:
        rss = " + ".join(f"{v:.0f}" for v in r.rss.values()) if len(r.rss) > 1 else ""
        total = sum(r.rss.values())
        print(f"{r.name:<24} {total:>9.0f} {r.ready_s:>8.1f}s "
              + (f"{r.first_search_s:>10.1f}s" if not math.isnan(r.first_search_s) else f"{'-':>11}")
              + (f"   ({rss})" if rss else ""))  # fmt: skip


# -------------------------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder", type=Path, default=ROOT / "corpus", help="folder to index")
    parser.add_argument("--requests", type=int, default=120, help="requests per cell")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent clients")
    parser.add_argument("--fresh", type=int, default=5, help="freshness trials")
    parser.add_argument("--no-workers", action="store_true", help="skip (c), one process with --workers 2")
    parser.add_argument("--questions", type=Path, default=QUESTIONS)
    parser.add_argument("--out", type=Path, help="also write the figures here as JSON")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    questions = load_questions(args.questions)
    started = time.perf_counter()
    c, n = args.concurrency, args.requests
    cells: list[Measured] = []
    done: list[Replica] = []
    trials: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="ragfirst-replicas-") as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        server = stack.enter_context(chroma_server(tmp / "server", tmp / "chroma.log"))
        on_server = store_env(server.url, None)
        on_embedded = store_env(None, tmp / "embedded")
        ingest_s = {"server": ingest(args.folder, on_server, "the Chroma server"),
                    "embedded": ingest(args.folder, on_embedded, "an embedded store")}  # fmt: skip

        with ExitStack() as pair:
            a = pair.enter_context(service("replica A", on_server, tmp, questions[0]))
            warm(a, questions, c)
            cells.append(measure("1 process", "/v1/search", 1, [a], server, questions, n))
            for route in ROUTES:
                cells.append(measure("1 process", route, c, [a], server, questions, n))
            b = pair.enter_context(service("replica B", on_server, tmp, questions[0]))
            warm(b, questions, c)
            for route in ROUTES:
                cells.append(measure("2 processes", route, c, [a, b], server, questions, n))
            trials = freshness(a, b, args.fresh)
            for r in (a, b):
                r.measure_rss()
                done.append(r)

        if not args.no_workers:
            with service("--workers 2", on_server, tmp, questions[0], workers=2) as w:
                warm(w, questions, c)
                for route in ROUTES:
                    cells.append(measure("--workers 2", route, c, [w], server, questions, n))
                w.measure_rss()
                done.append(w)

        with service("embedded store", on_embedded, tmp, questions[0]) as e:
            warm(e, questions, 1, ("/v1/search",))
            cells.append(measure("embedded", "/v1/search", 1, [e], None, questions, n))
            e.measure_rss()
            done.append(e)
        server.measure_rss()
        done.append(server)

    total_s = time.perf_counter() - started
    print_tables(cells, done, trials, args)
    print(f"\n{len(questions)} questions, {n} requests per cell, {c} clients, total {total_s:.0f} s")
    if args.out:
        by = {(m.config, m.cell.route, m.cell.concurrency): m.cell for m in cells}
        ratios = {}
        for config, key in (("2 processes", "b_over_a"), ("--workers 2", "c_over_a")):
            for route in ROUTES:
                one, other = by.get(("1 process", route, c)), by.get((config, route, c))
                if one and other:
                    ratios[f"{key}{route.replace('/', '_')}"] = {
                        "rps": round(other.rps / one.rps, 3) if one.rps else None,
                        "p50": round(other.p(50) / one.p(50), 3), "p95": round(other.p(95) / one.p(95), 3),
                    }  # fmt: skip
        emb, srv = by.get(("embedded", "/v1/search", 1)), by.get(("1 process", "/v1/search", 1))
        figures = {
            "folder": str(args.folder), "requests": n, "concurrency": c, "questions": len(questions),
            "generator": GENERATOR, "cpus": NCPU, "ingest_s": {k: round(v, 2) for k, v in ingest_s.items()},
            "total_s": round(total_s, 2),
            "cells": [m.summary() for m in cells],
            "ratios": ratios,
            "store_kind_search_p50_ms": {
                "embedded": round(emb.p(50), 2) if emb else None,
                "server": round(srv.p(50), 2) if srv else None,
                "server_over_embedded": round(srv.p(50) / emb.p(50), 3) if emb and srv else None,
            },
            "freshness": {
                "trials": trials, "revision_check_s": REVISION_CHECK_S,
                "dense_s_median_max": med_max([t["dense_s"] for t in trials]),
                "keyword_s_median_max": med_max([t["keyword_s"] for t in trials]),
                "rebuild_ms_median_max": med_max([t["rebuild_ms"] for t in trials]),
            },
            "processes": [r.summary() for r in done],
        }  # fmt: skip
        args.out.write_text(json.dumps(no_nan(figures), indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
