"""Faults with real processes: the service, the Chroma server and the LLM server killed mid-work, and
a store whose disk is read-only or fills up during an ingest.

* The service SIGKILLed during an upload (at a failpoint inside a document's write, then at a moment
  picked by watching the store): after a restart every document is whole or absent, and uploading
  again completes it. Kills of the ``ingest`` command are tests/ingest/test_crash.py.
* ``chroma run`` stopped, then killed, under queries: 503 with a message saying so, bounded by
  ``RAG_CHROMA_TIMEOUT_S``; answers again once it is back, with no restart of ragfirst.
* ``python -m llama_cpp.server`` killed mid-stream: the SSE stream ends with an ``error`` event that
  still carries the sources, and the next request gets a quick 503.
* The embedded store on a small tmpfs (needs root to mount one): read-only, then nearly full during
  an ``ingest`` run: a clear reason per file, exit status 2 or 1, nothing indexed before lost.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from ingest.embed import Embedder
from ingest.load import load_document
from ingest.pipeline import Ingestor
from ingest.settings import Settings
from ingest.split import split_document
from ingest.store import ChunkStore, open_store
from service.api.app import create_app
from tests.conftest import CORPUS, free_port, serve_app, server_process

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
REVISION = re.compile(r"\(revision (\d+)\)")


def clean_env(**values: str) -> dict[str, str]:
    """The environment of a child process: no RAG_* of the developer's, offline models, ``values``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(HF_HUB_OFFLINE="1", RAG_LOG_LEVEL="warning", **values)
    return env


def wait_until(check: Any, *, timeout: float, interval: float = 0.01) -> Any:
    """Poll ``check`` until it returns something truthy; fails the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(interval)
    pytest.fail(f"not within {timeout} s: {check}")


def expected_chunks(docs: dict[str, bytes], embedder: Embedder, tmp: Path) -> dict[str, int]:
    """How many chunks the pipeline makes of each document (split only: nothing embedded)."""
    budget = Ingestor(Settings(chroma_path=tmp / "ref"), embedder=embedder).budget
    return {source: len(split_document(load_document(data, source), budget)) for source, data in docs.items()}


def whole_documents(store: ChunkStore) -> dict[str, tuple[int, set[str]]]:
    """Each listed document's chunk count and the revisions its text comes from, after checking that
    readers see exactly the chunks its record names, at positions 0..n-1."""
    out = {}
    for doc in store.documents():
        chunks = store.chunks_of(doc.document_id)
        assert [int(c.metadata["position"]) for c in chunks] == list(range(doc.chunks)), doc.source
        out[doc.source] = (doc.chunks, {m.group(1) for c in chunks for m in REVISION.finditer(c.text)})
    return out


# ------------------------------------------------------------------------ the service SIGKILLed


def policy_docs(revision: int, count: int = 3) -> dict[str, bytes]:
    docs = {}
    for i in range(count):
        paragraphs = "\n\n".join(
            f"Rule {i}.{p} (revision {revision}) asks for {(i * 7 + p) % 90 + 10} sign-offs and an "
            f"audit every {p + 2} weeks. " + "Every step is written down for the auditors. " * 5
            for p in range(8)
        )
        docs[f"rules-{i}.md"] = f"# Rules {i}\n\n## Scope\n\n{paragraphs}\n".encode()
    return docs


@contextmanager
def service(env: dict[str, str], log: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    args = [sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    with server_process(args, ready_url=f"{url}/healthz", log_path=log, env=env) as proc:
        yield url, proc


def upload(url: str, docs: dict[str, bytes], collection: str) -> list[dict[str, Any]]:
    files = [("files", (source, data, "text/markdown")) for source, data in docs.items()]
    response = httpx.post(f"{url}/v1/documents", files=files, data={"collection": collection}, timeout=300)
    assert response.status_code == 200, response.text
    return list(response.json()["files"])


def listed(url: str, collection: str) -> dict[str, int]:
    response = httpx.get(f"{url}/v1/documents", params={"collection": collection}, timeout=60)
    assert response.status_code == 200, response.text
    return {d["source"]: d["chunks"] for d in response.json()["documents"]}


def test_service_killed_during_upload_leaves_documents_whole_or_absent(
    chroma_server: str, tmp_path: Path, embedder: Embedder
) -> None:
    # A Chroma server as the store, so that this process can read it while the service writes.
    collection = "faults-upload"
    settings = Settings(chroma_url=chroma_server, collection=collection)
    env = clean_env(RAG_CHROMA_URL=chroma_server, RAG_GENERATOR="extractive", RAG_STORE_BATCH_SIZE="2")
    first, second = policy_docs(1), policy_docs(2)
    want1, want2 = expected_chunks(first, embedder, tmp_path), expected_chunks(second, embedder, tmp_path)
    assert all(n >= 3 for n in want1.values()), want1  # several writes per document

    # 1. Killed by a failpoint just after the first write of the second document's chunks.
    batches0 = -(-want1["rules-0.md"] // 2)
    killing = {**env, "RAG_FAILPOINT": f"replace:wrote-batch:{batches0 + 1}"}
    with service(killing, tmp_path / "service-1.log") as (url, proc):
        with pytest.raises(httpx.HTTPError):
            upload(url, first, collection)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    store = open_store(settings)
    assert whole_documents(store) == {"rules-0.md": (want1["rules-0.md"], {"1"})}

    with service(env, tmp_path / "service-2.log") as (url, proc):
        assert listed(url, collection) == {"rules-0.md": want1["rules-0.md"]}
        hits = httpx.post(f"{url}/v1/search", json={"query": "Rule 1.3 sign-offs", "collection": collection,
                                                    "top_k": 10}, timeout=60).json()["results"]  # fmt: skip
        assert hits and {h["source"] for h in hits} == {"rules-0.md"}  # nothing of the half-written one
        outcomes = {f["source"]: (f["outcome"], f["chunks"]) for f in upload(url, first, collection)}
        assert outcomes == {"rules-0.md": ("unchanged", want1["rules-0.md"]),
                            "rules-1.md": ("added", want1["rules-1.md"]),
                            "rules-2.md": ("added", want1["rules-2.md"])}  # fmt: skip
        assert listed(url, collection) == want1
        assert {s: n for s, (n, _) in whole_documents(store).items()} == want1
        assert store.count() == sum(want1.values())  # the half-written chunks were overwritten

        # 2. Killed from outside while a new version of every document is being written.
        base = store.count()
        cut_off: list[BaseException] = []

        def upload_second() -> None:
            try:
                upload(url, second, collection)
            except httpx.HTTPError as exc:
                cut_off.append(exc)

        thread = threading.Thread(target=upload_second)
        thread.start()
        wait_until(lambda: store.count() > base + 1, timeout=120, interval=0.005)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
        thread.join(timeout=30)
        assert cut_off, "the upload was meant to be cut off by the kill"
    view = whole_documents(store)
    assert set(view) == set(first)
    for source, (chunks, revisions) in view.items():  # each wholly the old or wholly the new version
        assert (chunks, revisions) in ((want1[source], {"1"}), (want2[source], {"2"})), (source, view)
    assert any(revisions == {"1"} for _, revisions in view.values()), "the kill came after the upload"

    # Uploading again completes it (the pipeline the upload route runs, without a third service start).
    again = Ingestor(settings, embedder=embedder)
    outcomes = {s: again.ingest_bytes(data, source=s, root="upload").outcome for s, data in second.items()}
    assert set(outcomes.values()) <= {"updated", "unchanged"}, outcomes
    assert whole_documents(store) == {source: (n, {"2"}) for source, n in want2.items()}


# ------------------------------------------------------------------------ the Chroma server down


class ChromaServer:
    """``chroma run`` on one port and folder that a test can stop, kill and start again."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self._runs: list[Any] = []

    def start(self) -> None:
        chroma = shutil.which("chroma") or str(BIN / "chroma")
        args = [chroma, "run", "--path", str(self.folder / "db"), "--host", "127.0.0.1",
                "--port", str(self.port)]  # fmt: skip
        run = server_process(args, ready_url=f"{self.url}/api/v2/heartbeat",
                             log_path=self.folder / f"chroma-{len(self._runs)}.log")  # fmt: skip
        self.proc = run.__enter__()
        self._runs.append(run)

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._runs.pop().__exit__(None, None, None)
        self.proc = None

    def close(self) -> None:
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self._runs.pop().__exit__(None, None, None)


@pytest.fixture
def chroma(tmp_path: Path) -> Iterator[ChromaServer]:
    server = ChromaServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.close()


def sse_events(response: httpx.Response) -> Iterator[tuple[str, dict[str, Any]]]:
    name = ""
    for line in response.iter_lines():
        if line.startswith("event:"):
            name = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            yield name, json.loads(line.split(":", 1)[1])


def test_chroma_server_down_gives_503_and_answers_resume_after_restart(
    chroma: ChromaServer, embedder: Embedder
) -> None:
    settings = Settings(chroma_url=chroma.url, chroma_timeout_s=2.0, generator="extractive")
    Ingestor(settings, embedder=embedder).ingest_paths([CORPUS / "hr" / "pto-policy.md"])
    search = {"query": "How many PTO days can I carry over?"}
    question = {"question": "How many PTO days can I carry over?", "generator": "extractive"}
    with (
        serve_app(create_app(settings, embedder=embedder)) as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        before = client.post("/v1/query", json=question)
        assert before.status_code == 200 and before.json()["covered"], before.text

        # Hung (stopped, not gone): each request gives up after RAG_CHROMA_TIMEOUT_S.
        assert chroma.proc is not None
        os.kill(chroma.proc.pid, signal.SIGSTOP)
        started = time.monotonic()
        hung = client.post("/v1/search", json=search)
        assert hung.status_code == 503 and "did not answer in time" in hung.json()["detail"], hung.text
        assert time.monotonic() - started < 8

        # Gone: refused at once, on every route that reads the store.
        chroma.kill()
        started = time.monotonic()
        for path, body in (("/v1/search", search), ("/v1/query", question)):
            down = client.post(path, json=body)
            assert down.status_code == 503, (path, down.text)
            assert "cannot reach the Chroma server at " + chroma.url in down.json()["detail"]
        assert client.get("/v1/collections").status_code == 503
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["store"].startswith("error")
        with client.stream("POST", "/v1/query", json={**question, "stream": True}) as stream:
            events = list(sse_events(stream))
        assert [name for name, _ in events] == ["error"] and events[0][1]["status"] == 503
        assert time.monotonic() - started < 5

        chroma.start()
        after = wait_until(lambda: (r := client.post("/v1/query", json=question)).status_code == 200 and r,
                           timeout=30, interval=0.2)  # fmt: skip
        assert after.json()["answer"] == before.json()["answer"]
        assert client.post("/v1/search", json=search).status_code == 200
        assert client.get("/readyz").status_code == 200


# ------------------------------------------------------------------------ the LLM server killed


def test_llm_server_killed_mid_stream_ends_with_an_error_event_and_then_503(
    tmp_path: Path, embedder: Embedder
) -> None:
    from service.generate.local import packaged_model_path

    port = free_port()
    llm_url = f"http://127.0.0.1:{port}/v1"
    args = [sys.executable, "-m", "llama_cpp.server", "--model", str(packaged_model_path()),
            "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096"]  # fmt: skip
    settings = Settings(chroma_path=tmp_path / "chroma", generator="openai", llm_base_url=llm_url)
    # One short source keeps the prompt short: a busy CPU takes long enough to read it as it is.
    doc = tmp_path / "pto.md"
    doc.write_text("# PTO\n\nUp to 5 unused PTO days carry over into the next year; they must be used by "
                   "31 March. Carry-over needs no request.\n", encoding="utf-8")  # fmt: skip
    Ingestor(settings, embedder=embedder).ingest_paths([doc])
    question = {"question": "Explain the PTO carry-over rules in detail.", "stream": True, "top_k": 1}
    with (
        server_process(args, ready_url=f"{llm_url}/models", log_path=tmp_path / "llama.log") as llm,
        serve_app(create_app(settings, embedder=embedder)) as url,
        httpx.Client(base_url=url, timeout=120) as client,
    ):
        events: list[tuple[str, dict[str, Any]]] = []
        killed_at = 0.0
        with client.stream("POST", "/v1/query", json=question) as response:
            assert response.status_code == 200
            for name, data in sse_events(response):
                events.append((name, data))
                if name == "delta" and not killed_at:
                    os.kill(llm.pid, signal.SIGKILL)
                    killed_at = time.monotonic()
        ended_after = time.monotonic() - killed_at
        names = [name for name, _ in events]
        assert killed_at and names[0] == "sources" and "delta" in names, names
        assert names[-1] == "error" and "answer" not in names, names
        error = events[-1][1]
        assert error["status"] == 503 and "LLM endpoint" in error["detail"], error
        assert error["sources"] and error["sources"][0]["source"] == "pto.md"
        assert ended_after < 5, f"the stream took {ended_after:.1f} s to end after the kill"

        llm.wait(timeout=30)
        started = time.monotonic()
        after = client.post("/v1/query", json={**question, "stream": False})
        assert after.status_code == 503, after.text
        assert f"cannot reach LLM endpoint {llm_url}" in after.json()["detail"]
        assert after.json()["sources"], "the sources still come back"
        assert time.monotonic() - started < 10
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["generator"].startswith("error")


# ------------------------------------------------------------------------ the store's disk


def ingest_cli(paths: list[Path], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "ingest"), *map(str, paths)], env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB tmpfs of this test's own (mounting one needs root: skipped without)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(disk)],
                             capture_output=True, text=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        # Lazily: this process may still hold the store's files open.
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_store_disk_read_only_or_full_fails_clearly_and_keeps_what_is_indexed(
    small_disk: Path, tmp_path: Path, embedder: Embedder
) -> None:
    kept, later = tmp_path / "kept", tmp_path / "later"
    for folder, name, count, paragraphs in ((kept, "kept", 2, 4), (later, "later", 3, 12)):
        folder.mkdir()
        for i in range(count):
            text = "\n\n".join(
                f"Item {name} {i}.{p} weighs {p * 3 + i} kilograms and ships from dock {p % 5}. "
                + "It is stored dry and upright. " * 6
                for p in range(paragraphs)
            )
            (folder / f"{name}-{i}.md").write_text(f"# {name.title()} {i}\n\n{text}\n", encoding="utf-8")
    min_free_mb = 2
    env = clean_env(RAG_CHROMA_PATH=str(small_disk / "chroma"), RAG_STORE_MIN_FREE_MB=str(min_free_mb))
    done = ingest_cli([kept], env)
    assert done.returncode == 0, done.stdout + done.stderr
    settings = Settings(chroma_path=small_disk / "chroma", store_min_free_mb=min_free_mb)
    want = expected_chunks({p.name: p.read_bytes() for p in sorted(kept.iterdir())}, embedder, tmp_path)

    # Read-only: the run stops at once, saying why.
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    try:
        done = ingest_cli([later], env)
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "readonly database" in done.stderr.replace("\n", " "), done.stderr

    # Nearly full: what fits is indexed, each file that does not fit fails with the reason.
    stat = os.statvfs(small_disk)
    filler = small_disk / "filler"
    # 16 KiB above the floor: room for a write or two, not for a folder of documents.
    filler.write_bytes(b"\0" * (stat.f_bavail * stat.f_frsize - min_free_mb * 2**20 - 16 * 1024))
    done = ingest_cli([later], env)
    out = " ".join(done.stdout.split())
    assert done.returncode == 1, out + done.stderr
    assert "failed" in out and "RAG_STORE_MIN_FREE_MB" in out, out
    filler.unlink()

    store = open_store(settings)
    view = whole_documents(store)
    assert {s: n for s, (n, _) in view.items() if s.startswith("kept")} == want
    hit = store.query(embedder.embed_query("How much does item kept 1.2 weigh?"), 1)
    assert hit[0].source == "kept-1.md"
    report = Ingestor(settings, embedder=embedder).ingest_paths([later])
    assert report.ok and report.count("added") >= 1
    assert len(store.documents()) == 5
    assert store.count() == sum(d.chunks for d in store.documents())
