"""Scale benchmark: a collection of 100,000 chunks and more.

1. Ingests a folder (the PostgreSQL manual) into collection ``manual`` of a store, with the full
   pipeline, unless that collection is already there (``--chroma-path`` keeps it between runs).
2. Builds collection ``big`` from copies of the manual under ``copyK/`` source prefixes, reusing the
   manual's stored vectors (embedding is linear by construction; what can grow with size is the store
   and the indexes), timing each copy's writes: flat per-copy times are linear ingest.
3. Ingests the same slice of files with the full pipeline into an empty collection and into ``big``,
   side by side: the cost of ingesting into a large collection against a small one.
4. Starts ``python -m service`` on ``big`` and times spawn to the first search answered (a replica's
   start-up, BM25 over every chunk included), then 1-client ``/v1/search`` p50/p95 (hybrid),
   filtered and unfiltered, against the bare in-process cost (one query embedding and one Chroma query),
   and the service's resident memory.

    python bench/scale.py /tmp/pgdoc/x/usr/share/doc/postgresql-doc-15/html --chroma-path /tmp/scale-store
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

# The repository root first (so that bench.query imports), never this folder (bench/ingest.py would
# shadow the ingest package).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from bench.query import free_port, stop  # noqa: E402
from bench.replicas import rss_mb  # noqa: E402
from ingest.embed import Embedder  # noqa: E402
from ingest.pipeline import Ingestor, discover  # noqa: E402
from ingest.settings import Settings  # noqa: E402
from ingest.store import ChunkStore, list_collections, open_store  # noqa: E402
from ingest.types import Chunk  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = [
    "How do I create an index without locking writes to the table?",
    "What does VACUUM FULL do differently from plain VACUUM?",
    "How can I set up streaming replication to a standby server?",
    "Which isolation levels does PostgreSQL support?",
    "How do I restore a dump made with pg_dump in custom format?",
    "What is the maximum size of a text value?",
    "How are JSONB values indexed with GIN?",
    "What does the work_mem setting control?",
    "How do I write a recursive common table expression?",
    "What happens when a transaction ID wraps around?",
    "How do I grant select on all tables in a schema?",
    "How does EXPLAIN ANALYZE report actual row counts?",
    "What is a partial index?",
    "How do I listen for notifications with LISTEN and NOTIFY?",
    "What are the options of the COPY command for CSV files?",
    "How does table partitioning by range work?",
    "What does the pg_hba.conf file configure?",
    "How do I create a trigger function in PL/pgSQL?",
    "What are advisory locks?",
    "How can I see which queries are running right now?",
]
FILTER = {"source_prefix": "copy0/"}


def settings_for(chroma_path: Path, collection: str) -> Settings:
    return Settings(chroma_path=chroma_path, chroma_url=None, collection=collection)


def ensure_manual(folder: Path, chroma_path: Path, embedder: Embedder) -> dict[str, Any]:
    settings = settings_for(chroma_path, "manual")
    if "manual" in list_collections(settings):
        store = open_store(settings, "manual", create=False)
        return {"ingest_s": None, "chunks": store.count(), "note": "already in the store"}
    started = time.perf_counter()
    report = Ingestor(settings, embedder=embedder).ingest_paths([folder])
    seconds = time.perf_counter() - started
    return {"ingest_s": seconds, "chunks": report.embedded_chunks, "files": report.count("added")}


def manual_documents(store: ChunkStore) -> dict[str, dict[str, Any]]:
    """Every document of ``manual`` with its chunks (as :class:`Chunk`) and stored vectors."""
    docs: dict[str, dict[str, Any]] = defaultdict(lambda: {"chunks": [], "vectors": []})
    offset, page_size = 0, 5000
    while True:
        page = store.chunks.get(
            include=["documents", "metadatas", "embeddings"], limit=page_size, offset=offset
        )
        embeddings = page["embeddings"]
        assert embeddings is not None
        rows = zip(page["documents"] or [], page["metadatas"] or [], embeddings, strict=True)
        for text, meta, vector in rows:
            doc = docs[str(meta["source"])]
            doc["title"], doc["filetype"] = str(meta["title"]), str(meta["filetype"])
            section = tuple(p for p in str(meta.get("section", "")).split(" > ") if p)
            page_no = meta.get("page")
            doc["chunks"].append(
                Chunk(
                    text=text or "", embed_text="", position=int(meta["position"]), start=int(meta["start"]),
                    end=int(meta["end"]), section=section, page=int(page_no) if page_no is not None else None,
                    page_end=int(meta.get("page_end") or page_no) if page_no is not None else None,
                    tokens=int(meta["tokens"]),
                )
            )
            doc["vectors"].append(list(vector))
        if len(page["ids"]) < page_size:
            break
        offset += page_size
    return docs


def build_big(chroma_path: Path, target_chunks: int) -> dict[str, Any]:
    manual = open_store(settings_for(chroma_path, "manual"), "manual", create=False)
    big = open_store(settings_for(chroma_path, "big"), "big")
    docs = manual_documents(manual)
    per_copy = sum(len(d["chunks"]) for d in docs.values())
    copies = -(-target_chunks // per_copy)
    have = {d.source for d in big.documents()}
    times = []
    for k in range(copies):
        started = time.perf_counter()
        for source, doc in sorted(docs.items()):
            name = f"copy{k}/{source}"
            if name in have:
                continue
            big.replace_document(
                source=name, title=doc["title"], filetype=doc["filetype"], version=f"copy{k}",
                root="bench", chunks=doc["chunks"], vectors=doc["vectors"],
            )  # fmt: skip
        times.append(time.perf_counter() - started)
        print(f"  copy {k}: {per_copy} chunks stored in {times[-1]:.1f} s (collection now {big.count()})")
    return {"chunks": big.count(), "copies": copies, "per_copy_chunks": per_copy, "copy_store_s": times}


def slice_ingest(folder: Path, chroma_path: Path, embedder: Embedder, files: int) -> dict[str, float]:
    """The same files through the full pipeline into an empty collection and into ``big``."""
    found = discover([folder]).files[:files]
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        subset = Path(tmp) / "slice"
        for f in found:
            (subset / f.source).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f.path, subset / f.source)  # a symlink out of the folder is skipped
        for name in ("small", "big"):
            ingestor = Ingestor(settings_for(chroma_path, name), embedder=embedder)
            started = time.perf_counter()
            report = ingestor.ingest_paths([subset])
            out[name] = time.perf_counter() - started
            out[f"{name}_chunks"] = report.embedded_chunks
            for doc in ingestor.store.documents():  # leave both collections as they were
                if doc.source in {f.source for f in found}:
                    ingestor.store.delete_document(doc.document_id)
    return out


def serve(chroma_path: Path, log: Path) -> tuple[subprocess.Popen[bytes], str, float]:
    port = free_port()
    env = {**os.environ, "RAG_CHROMA_PATH": str(chroma_path), "RAG_COLLECTION": "big",
           "RAG_GENERATOR": "extractive", "HF_HUB_OFFLINE": "1"}  # fmt: skip
    env.pop("RAG_CHROMA_URL", None)
    command = [sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(port),
               "--log-level", "warning"]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    while True:
        if proc.poll() is not None:
            sys.exit(f"service exited: {log.read_text()[-3000:]}")
        try:
            r = httpx.post(f"{url}/v1/search", json={"query": QUESTIONS[0], "collection": "big"}, timeout=120)
            if r.status_code == 200:
                return proc, url, time.perf_counter() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.1)


def latencies(call: Any, rounds: int) -> list[float]:
    out = []
    for i in range(rounds):
        started = time.perf_counter()
        call(QUESTIONS[i % len(QUESTIONS)])
        out.append((time.perf_counter() - started) * 1000)
    return out


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--chroma-path", type=Path, required=True, help="store kept between runs")
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--slice-files", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    embedder = Embedder(settings_for(args.chroma_path, "manual"))
    figures: dict[str, Any] = {"manual": ensure_manual(args.folder, args.chroma_path, embedder)}
    print(f"manual: {figures['manual']}")
    figures["big"] = build_big(args.chroma_path, args.chunks)
    figures["slice"] = slice_ingest(args.folder, args.chroma_path, embedder, args.slice_files)
    print(f"slice: {figures['slice']}")

    big = open_store(settings_for(args.chroma_path, "big"), "big", create=False)

    def bare(question: str) -> None:
        big.chunks.query(query_embeddings=[embedder.embed_query(question)], n_results=5)

    latencies(bare, 5)
    bare_ms = latencies(bare, args.rounds)

    with tempfile.TemporaryDirectory() as tmp:
        proc, url, startup_s = serve(args.chroma_path, Path(tmp) / "service.log")
        try:
            with httpx.Client(base_url=url, timeout=120) as client:

                def search(question: str, filters: dict[str, Any] | None = None) -> None:
                    body = {"query": question, "collection": "big", "top_k": 5, "filters": filters}
                    client.post("/v1/search", json=body).raise_for_status()

                latencies(search, 5)
                service_ms = latencies(search, args.rounds)
                filtered_ms = latencies(lambda q: search(q, FILTER), args.rounds)
                rss = rss_mb(proc.pid)
        finally:
            stop(proc)
    figures["service"] = {
        "startup_to_first_search_s": startup_s, "rss_mb": rss,
        "search_p50_ms": pct(service_ms, 50), "search_p95_ms": pct(service_ms, 95),
        "filtered_p50_ms": pct(filtered_ms, 50), "filtered_p95_ms": pct(filtered_ms, 95),
        "bare_p50_ms": pct(bare_ms, 50), "bare_p95_ms": pct(bare_ms, 95),
    }  # fmt: skip
    s = figures["service"]
    b = figures["big"]
    print(f"\ncollection big     {b['chunks']} chunks ({b['copies']} copies of {b['per_copy_chunks']})")
    times = b["copy_store_s"]
    print(f"store writes/copy  first {times[0]:.1f} s, last {times[-1]:.1f} s "
          f"(last/first {times[-1] / times[0]:.2f}x)")  # fmt: skip
    sl = figures["slice"]
    print(f"slice ingest       into empty {sl['small']:.1f} s, into big {sl['big']:.1f} s "
          f"({sl['big'] / sl['small']:.2f}x, {sl['small_chunks']} chunks)")  # fmt: skip
    print(f"replica start-up   {s['startup_to_first_search_s']:.1f} s spawn to first /v1/search answered "
          "(target < 10 s)")  # fmt: skip
    print(f"search, 1 client   p50 {s['search_p50_ms']:.1f} ms, p95 {s['search_p95_ms']:.1f} ms "
          "(target p95 < 60 ms)")  # fmt: skip
    print(f"  bare             p50 {s['bare_p50_ms']:.1f} ms, p95 {s['bare_p95_ms']:.1f} ms "
          f"(service/bare p50 {s['search_p50_ms'] / s['bare_p50_ms']:.2f}x)")  # fmt: skip
    print(f"  filtered         p50 {s['filtered_p50_ms']:.1f} ms, p95 {s['filtered_p95_ms']:.1f} ms "
          f"(filtered/unfiltered p50 {s['filtered_p50_ms'] / s['search_p50_ms']:.2f}x; "
          f"{FILTER})")  # fmt: skip
    print(f"service RSS        {s['rss_mb']:.0f} MiB")
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
