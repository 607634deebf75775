"""A real `ingest` process killed with SIGKILL mid-run, then run again, leaves exactly one copy.

Kills land at each step of a document's replacement (the process SIGKILLs itself at a named
failpoint, see ingest/failpoints.py) and once at a random moment. After each kill a reader sees every
document exactly once, old or new; after a rerun the store equals a clean ingest.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ingest.embed import Embedder
from ingest.pipeline import Ingestor
from ingest.settings import Settings
from ingest.store import ChunkStore
from tests.ingest.test_pipeline import assert_consistent

pytestmark = pytest.mark.slow
DOCS = 6


def make_docs(root: Path, generation: int) -> None:
    for i in range(DOCS):
        paragraphs = "\n\n".join(
            f"Policy {i}.{p} (revision {generation}) needs {(i * 7 + p) % 90 + 10} approvals and "
            f"a review every {p + 2} weeks. " + "Each step is documented for the auditors. " * 5
            for p in range(10)
        )
        path = root / f"dept{i % 2}" / f"policy-{i}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# Policy {i}\n\n## Scope\n\n{paragraphs}\n", encoding="utf-8")


def run_ingest(args: list[str], env: dict[str, str], *, kill_after: float | None = None) -> int:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingest.cli", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if kill_after is not None:
        time.sleep(kill_after)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
    return proc.wait(timeout=300)


def reader_view(store: ChunkStore) -> dict[str, set[str]]:
    """What a reader sees: for each source, the revisions its visible chunks come from."""
    seen: dict[str, set[str]] = {}
    for chunk in store.all_chunks():
        revision = (
            chunk.text.split("(revision ", 1)[1].split(")", 1)[0] if "(revision " in chunk.text else "?"
        )
        seen.setdefault(chunk.source, set()).add(revision)
    return seen


@pytest.mark.parametrize(
    "failpoint",
    [
        "replace:marked-dirty",
        "replace:wrote-batch:2",
        "replace:switched",
        "replace:deleted-old",
        "delete:deleted-chunks",
        "timed",
    ],
)
def test_sigkill_then_rerun_leaves_one_copy(failpoint: str, tmp_path: Path, embedder: Embedder) -> None:
    root = tmp_path / "docs"
    db = tmp_path / "chroma"
    settings = Settings(chroma_path=db, store_batch_size=4)
    make_docs(root, generation=0)
    Ingestor(settings, embedder=embedder).ingest_paths([root])

    make_docs(root, generation=1)
    env = {**os.environ, "RAG_CHROMA_PATH": str(db), "RAG_STORE_BATCH_SIZE": "4"}
    if failpoint == "delete:deleted-chunks":
        code = run_ingest(["delete", "dept0/policy-2.md"], {**env, "RAG_FAILPOINT": failpoint})
    elif failpoint == "timed":
        code = run_ingest([str(root)], env, kill_after=6.0)
    else:
        code = run_ingest([str(root)], {**env, "RAG_FAILPOINT": failpoint})
    assert code == -signal.SIGKILL, "the process was meant to die by SIGKILL"

    # A new process opens the store as it was left: every document is seen once, old or new.
    reader = Ingestor(settings, embedder=embedder).store
    view = reader_view(reader)
    expected_sources = {f"dept{i % 2}/policy-{i}.md" for i in range(DOCS)}
    if failpoint == "delete:deleted-chunks":
        assert set(view) <= expected_sources
    else:
        assert set(view) == expected_sources
    assert all(len(revisions) == 1 for revisions in view.values()), view

    ingestor = Ingestor(settings, embedder=embedder)
    report = ingestor.ingest_paths([root])
    assert report.ok
    if failpoint != "timed":
        assert report.repaired == 1
    assert_consistent(ingestor.store)
    assert all(revisions == {"1"} for revisions in reader_view(ingestor.store).values())

    clean = Ingestor(Settings(chroma_path=tmp_path / "clean"), embedder=embedder)
    clean.ingest_paths([root])
    assert sorted((d.source, d.chunks, d.version) for d in ingestor.store.documents()) == sorted(
        (d.source, d.chunks, d.version) for d in clean.store.documents()
    )
    assert ingestor.store.count() == clean.store.count()
