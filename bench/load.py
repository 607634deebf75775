"""Load while ingesting: queries keep being answered, correctly, while documents pour in.

Indexes a folder (``corpus/``) into a fresh temporary embedded Chroma store with the ``ingest``
command, starts ``python -m service`` on a free loopback port against it, then for ``--seconds``:

* ``--clients`` threads (8) send ``/v1/search`` and ``/v1/query`` (extractive generator) in turn,
  cycling over the retrieval questions and, once some have arrived, questions about the documents
  uploaded so far;
* one thread uploads ``--docs`` (200) generated Markdown documents, one per ``POST /v1/documents``,
  into the same collection. Each holds one fact found nowhere else ("Project Kelbrano ships on
  14 March 2027.") somewhere among one to four sections of filler, so sizes run from one chunk to
  several.

The clients keep going until the time is up and every upload is done. Then it checks what was
uploaded: every document is listed with the chunk count the upload reported, which is the count
this process gets by loading and splitting the same bytes with the service's own pipeline; a
question about each document's fact finds it in the top 5; and, with the service stopped, the store
holds exactly that many visible chunks for each and no leftover ones. Prints requests, errors, p50
and p95 per route, upload throughput, and the checks; exits 1 when any request failed or any check
did not hold. Everything listens on 127.0.0.1, stops by itself and is removed at the end.

    python bench/load.py                         # 2 minutes, 8 clients, 200 documents
    python bench/load.py --seconds 30 --out /tmp/load.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Run as a script, this file's folder comes first on sys.path and bench/ingest.py would shadow the
# ingest package; the repository root goes there instead, so that bench.query imports.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from bench.query import QUESTIONS, load_questions, service_with_env  # noqa: E402
from ingest.types import document_id  # noqa: E402
from service.retrieve import REVISION_CHECK_S  # noqa: E402

ROOT = _HERE.parent
BIN = Path(sys.executable).parent
COLLECTION = "default"
TOP_K = 5
REQUEST_TIMEOUT_S = 120.0
SYLLABLES = ["kel", "bra", "no", "vix", "tor", "qua", "zen", "lum", "dri", "fa", "sor", "mek",
             "yol", "tra", "pex", "gir", "hu", "ond", "ris", "cam", "ul", "bey", "wop", "zan"]  # fmt: skip
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]  # fmt: skip
FILLER = [
    "The working group meets every second week to review open risks and staffing.",
    "Dependencies on the platform team are tracked in the shared planning board.",
    "Budget questions go to the finance partner named in the project charter.",
    "Test plans are written before the first milestone and reviewed by quality engineering.",
    "The design review checks accessibility, localisation and the support handbook.",
    "Customer pilots run for four weeks and end with a written summary of findings.",
    "Each milestone closes with a demo for stakeholders and a short retrospective.",
    "Security review covers data flows, third-party libraries and access to production.",
    "Release notes are drafted by the product manager and checked by documentation.",
    "On-call coverage for the launch week is agreed with the operations team in advance.",
]
SECTIONS = ["Scope", "Team", "Milestones", "Risks", "Rollout", "Support", "Budget", "Testing"]


@dataclass(frozen=True)
class Doc:
    source: str
    codename: str
    date: str
    data: bytes

    @property
    def question(self) -> str:
        return f"When does Project {self.codename} ship?"


@dataclass
class Route:
    """Every request to one route during the run."""

    name: str
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""

    def p(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    def summary(self) -> dict[str, Any]:
        return {"requests": len(self.latencies_ms) + self.errors, "errors": self.errors,
                "p50_ms": round(self.p(50), 1), "p95_ms": round(self.p(95), 1),
                "first_error": self.first_error}  # fmt: skip


@dataclass
class Uploaded:
    doc: Doc
    outcome: str
    chunks: int
    reason: str


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="how long the clients run at least")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--docs", type=int, default=200, help="documents uploaded during the run")
    parser.add_argument("--folder", type=Path, default=ROOT / "corpus", help="indexed before the run")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, help="also write the figures here as JSON")
    return parser.parse_args()


def make_docs(count: int, seed: int) -> list[Doc]:
    """``count`` Markdown documents, each with a codename and a ship date no other one has."""
    rng = random.Random(seed)
    names: set[str] = set()
    docs = []
    while len(docs) < count:
        name = "".join(rng.choice(SYLLABLES) for _ in range(3)).capitalize()
        if name in names:
            continue
        names.add(name)
        date = f"{rng.randint(1, 28)} {rng.choice(MONTHS)} {rng.randint(2027, 2031)}"
        n_sections = len(docs) % 4 + 1
        fact_at = rng.randrange(n_sections)
        parts = [f"# Project {name} release plan\n"]
        for s in range(n_sections):
            body = [rng.choice(FILLER) for _ in range(rng.randint(8, 14))]
            if s == fact_at:
                body.insert(rng.randrange(len(body) + 1), f"Project {name} ships on {date}.")
            parts.append(f"## {SECTIONS[(len(docs) + s) % len(SECTIONS)]}\n\n{' '.join(body)}\n")
        source = f"project-{name.lower()}.md"
        docs.append(Doc(source, name, date, "\n".join(parts).encode()))
    return docs


def service_env(chroma_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(RAG_CHROMA_PATH=str(chroma_path), RAG_GENERATOR="extractive", HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1")  # fmt: skip
    return env


def index_folder(folder: Path, env: dict[str, str]) -> float:
    """The ``ingest`` command on ``folder``, so this process opens the store only at the end."""
    started = time.perf_counter()
    done = subprocess.run([str(BIN / "ingest"), str(folder), "-c", COLLECTION], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=1800)  # fmt: skip
    seconds = time.perf_counter() - started
    last = (done.stdout.strip().splitlines() or [""])[-1]
    print(f"indexed {folder} in {seconds:.1f} s: {last}")
    if done.returncode not in (0, 1):  # 1: some file failed, which the corpus shows on purpose
        sys.exit(f"ingest failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return seconds


class Load:
    """The client threads and the uploader, sharing what has been uploaded so far."""

    def __init__(self, url: str, docs: list[Doc], questions: list[str], seconds: float) -> None:
        self.url = url
        self.docs = docs
        self.questions = questions
        self.seconds = seconds
        self.routes = {name: Route(name) for name in ("/v1/search", "/v1/query")}
        self.upload = Route("POST /v1/documents")
        self.uploaded: list[Uploaded] = []
        self.lock = threading.Lock()
        self.uploads_done = threading.Event()
        self.started = 0.0
        self.upload_s = 0.0

    def run(self, clients: int) -> float:
        self.started = time.perf_counter()
        threads = [threading.Thread(target=self._uploader)]
        threads += [threading.Thread(target=self._client, args=(i,)) for i in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return time.perf_counter() - self.started

    def _time_left(self) -> bool:
        return time.perf_counter() - self.started < self.seconds or not self.uploads_done.is_set()

    def _record(self, route: Route, started: float, error: str | None) -> None:
        with self.lock:
            if error is None:
                route.latencies_ms.append((time.perf_counter() - started) * 1000)
            else:
                route.errors += 1
                route.first_error = route.first_error or error[:300]

    def _uploader(self) -> None:
        try:
            with httpx.Client(base_url=self.url, timeout=REQUEST_TIMEOUT_S) as client:
                for doc in self.docs:
                    started = time.perf_counter()
                    try:
                        response = client.post(
                            "/v1/documents",
                            data={"collection": COLLECTION},
                            files={"files": (doc.source, doc.data, "text/markdown")},
                        )
                        response.raise_for_status()
                        got = response.json()["files"][0]
                    except Exception as exc:  # a failed upload is a figure, and a failed check later
                        self._record(self.upload, started, f"{type(exc).__name__}: {exc}")
                        continue
                    error = None if got["outcome"] == "added" else f"{doc.source}: {got}"
                    self._record(self.upload, started, error)
                    with self.lock:
                        self.uploaded.append(Uploaded(doc, got["outcome"], int(got["chunks"]), got["reason"]))
        finally:
            self.upload_s = time.perf_counter() - self.started
            self.uploads_done.set()

    def _client(self, seed: int) -> None:
        rng = random.Random(seed)
        turn = seed
        with httpx.Client(base_url=self.url, timeout=REQUEST_TIMEOUT_S) as client:
            while self._time_left():
                with self.lock:
                    arrived = [u.doc for u in self.uploaded]
                if arrived and rng.random() < 0.5:
                    question = rng.choice(arrived).question
                else:
                    question = rng.choice(self.questions)
                route = self.routes["/v1/search" if turn % 2 == 0 else "/v1/query"]
                turn += 1
                if route.name == "/v1/search":
                    body: dict[str, Any] = {"query": question, "top_k": TOP_K, "collection": COLLECTION}
                else:
                    body = {"question": question, "generator": "extractive", "collection": COLLECTION}
                started = time.perf_counter()
                try:
                    response = client.post(route.name, json=body)
                    ok = response.status_code == 200
                    error = None if ok else f"{response.status_code}: {response.text}"
                except httpx.HTTPError as exc:
                    error = f"{type(exc).__name__}: {exc}"
                self._record(route, started, error)


def check_service(url: str, load: Load) -> dict[str, Any]:
    """Every uploaded document listed with the chunk count its upload reported, and found in the
    top 5 by a question about its own fact."""
    with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT_S) as client:
        response = client.get("/v1/documents", params={"collection": COLLECTION})
        response.raise_for_status()
        listed = {d["source"]: d for d in response.json()["documents"]}
        wrong_count, not_found, ranks = [], [], []
        for up in load.uploaded:
            entry = listed.get(up.doc.source)
            if entry is None or entry["chunks"] != up.chunks:
                wrong_count.append(up.doc.source)
            hits = client.post(
                "/v1/search", json={"query": up.doc.question, "top_k": TOP_K, "collection": COLLECTION}
            ).json()["results"]
            sources = [h["source"] for h in hits]
            if up.doc.source in sources:
                ranks.append(sources.index(up.doc.source) + 1)
            else:
                not_found.append(up.doc.source)
    missing = [d.source for d in load.docs if d.source not in listed]
    return {"listed": sum(d.source in listed for d in load.docs), "missing": missing,
            "listed_count_differs": wrong_count, "not_in_top5": not_found,
            "found_at_rank_1": sum(r == 1 for r in ranks)}  # fmt: skip


def check_store(chroma_path: Path, load: Load) -> dict[str, Any]:
    """With the service stopped: each document's visible chunks in the store, against the count of
    loading and splitting its bytes with the same pipeline here; and chunks nothing names."""
    from ingest.load import load_document
    from ingest.pipeline import Ingestor
    from ingest.settings import Settings
    from ingest.split import split_document

    settings = Settings(_env_file=None, chroma_path=chroma_path, chroma_url=None)  # type: ignore[call-arg]
    ingestor = Ingestor(settings, collection=COLLECTION)
    store, budget = ingestor.store, ingestor.budget
    differs = []
    for up in load.uploaded:
        expected = len(split_document(load_document(up.doc.data, up.doc.source), budget))
        stored = len(store.chunks_of(document_id(up.doc.source)))
        if not expected == stored == up.chunks:
            differs.append(f"{up.doc.source}: split {expected}, upload said {up.chunks}, store {stored}")
    visible = len(store.all_chunks())
    indexed = sum(d.chunks for d in store.documents())
    return {"chunk_count_differs": differs, "visible_chunks": visible, "indexed_chunks": indexed,
            "leftover_chunks": store.count() - visible}  # fmt: skip


def print_report(load: Load, wall_s: float, service: dict[str, Any], store: dict[str, Any]) -> None:
    print(f"\nran {wall_s:.1f} s (asked {load.seconds:.0f} s); uploads finished at {load.upload_s:.1f} s")
    print(f"{'route':<20} {'requests':>8} {'errors':>7} {'p50':>9} {'p95':>9} {'req/s':>7}")
    for route in [*load.routes.values(), load.upload]:
        s = route.summary()
        print(f"{route.name:<20} {s['requests']:>8} {s['errors']:>7} {s['p50_ms']:>7.1f}ms "
              f"{s['p95_ms']:>7.1f}ms {s['requests'] / wall_s:>7.2f}")  # fmt: skip
        if route.first_error:
            print(f"  first error: {route.first_error}")
    chunks, took = sum(u.chunks for u in load.uploaded), load.upload_s
    print(f"uploaded {len(load.uploaded)}/{len(load.docs)} documents, {chunks} chunks: "
          f"{len(load.uploaded) / took:.2f} docs/s, {chunks / took:.1f} chunks/s")  # fmt: skip
    print(f"listed {service['listed']}/{len(load.docs)}; listed chunk count differs: "
          f"{len(service['listed_count_differs'])}; found in top {TOP_K}: "
          f"{len(load.uploaded) - len(service['not_in_top5'])}/{len(load.uploaded)} "
          f"(rank 1: {service['found_at_rank_1']})")  # fmt: skip
    print(f"store: chunk count differs from the split for {len(store['chunk_count_differs'])} documents; "
          f"visible chunks {store['visible_chunks']}, named by the manifest {store['indexed_chunks']}, "
          f"leftover {store['leftover_chunks']}")  # fmt: skip
    for name in ("missing", "listed_count_differs", "not_in_top5"):
        if service[name]:
            print(f"  {name}: {', '.join(service[name][:10])}")
    for line in store["chunk_count_differs"][:10]:
        print(f"  {line}")


def main() -> None:
    args = parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    questions = load_questions(QUESTIONS)
    docs = make_docs(args.docs, args.seed)
    with tempfile.TemporaryDirectory(prefix="ragfirst-load-") as tmp:
        chroma_path = Path(tmp) / "chroma"
        env = service_env(chroma_path)
        ingest_s = index_folder(args.folder, env)
        log = Path(tmp) / "service.log"
        with service_with_env(env, log) as url:
            # One request of each kind first, so the clock does not count loading the embedder.
            httpx.post(f"{url}/v1/search", json={"query": questions[0]}, timeout=REQUEST_TIMEOUT_S)
            load = Load(url, docs, questions, args.seconds)
            print(f"{args.clients} clients for {args.seconds:.0f} s while uploading {len(docs)} documents")
            wall_s = load.run(args.clients)
            # The keyword index notices new documents within REVISION_CHECK_S; until then a document
            # just uploaded is found by the dense retriever alone, and may rank below the top 5.
            time.sleep(REVISION_CHECK_S + 0.5)
            service = check_service(url, load)
        store = check_store(chroma_path, load)
    print_report(load, wall_s, service, store)
    errors = sum(r.errors for r in [*load.routes.values(), load.upload])
    failed = (errors or service["missing"] or service["listed_count_differs"] or service["not_in_top5"]
              or store["chunk_count_differs"] or store["leftover_chunks"])  # fmt: skip
    if args.out:
        figures = {
            "seconds": args.seconds, "clients": args.clients, "docs": args.docs, "wall_s": round(wall_s, 1),
            "upload_s": round(load.upload_s, 1), "ingest_s": round(ingest_s, 1),
            "routes": {r.name: r.summary() for r in [*load.routes.values(), load.upload]},
            "service_checks": service, "store_checks": store, "ok": not failed,
        }  # fmt: skip
        args.out.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"wrote {args.out}")
    print("OK" if not failed else "FAILED")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
