"""Ingest runs against a real Chroma (embedded and a loopback server) with the real embedder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ingest.embed import Embedder
from ingest.errors import EmbedderMismatch, UnknownCollection, UnknownDocument
from ingest.pipeline import Ingestor
from ingest.settings import Settings
from ingest.store import ChunkStore, list_collections, open_store
from ingest.types import IngestReport


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def handbook(version: int = 1) -> str:
    days = 25 if version == 1 else 28
    return (
        "# Handbook\n\n## Leave\n\n"
        f"Employees get {days} days of paid vacation each year.\n\n"
        "## Expenses\n\nExpense reports are due within 30 days of the trip.\n"
    )


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    write(root / "handbook.md", handbook())
    write(root / "it" / "passwords.txt", "Password policy\n\nPasswords have at least 14 characters.\n")
    write(root / "notes.html", "<html><head><title>Notes</title></head><body><main><h1>Notes</h1>"
          "<p>The all-hands is on Thursday at 10:00.</p></main></body></html>")  # fmt: skip
    return root


def ingestor_for(settings: Settings, embedder: Embedder) -> Ingestor:
    return Ingestor(settings, embedder=embedder)


def assert_consistent(store: ChunkStore) -> None:
    """Exactly the chunks the manifest names are stored: no orphan, no duplicate, none missing."""
    docs = store.documents()
    assert store.count() == sum(d.chunks for d in docs)
    visible = store.all_chunks()
    assert len(visible) == store.count()
    for doc in docs:
        positions = sorted(int(c.metadata["position"]) for c in store.chunks_of(doc.document_id))
        assert positions == list(range(doc.chunks)), doc.source


def test_ingest_indexes_every_format_and_is_queryable(
    store_settings: Settings, embedder: Embedder, docs: Path
) -> None:
    ingestor = ingestor_for(store_settings, embedder)
    report = ingestor.ingest_paths([docs])
    assert report.ok
    assert report.count("added") == 3
    store = ingestor.store
    assert [d.source for d in store.documents()] == ["handbook.md", "it/passwords.txt", "notes.html"]
    assert_consistent(store)
    hits = store.query(embedder.embed_query("How long is the minimum password?"), 1)
    assert hits[0].source == "it/passwords.txt"
    assert "14 characters" in hits[0].text
    meta = hits[0].metadata
    assert {"document_id", "title", "section", "position", "start", "end", "version"} <= set(meta)


def test_second_run_embeds_nothing(store_settings: Settings, embedder: Embedder, docs: Path) -> None:
    ingestor_for(store_settings, embedder).ingest_paths([docs])
    fresh = Embedder(store_settings)  # never loaded: a run that needs it would load it
    report = Ingestor(store_settings, embedder=fresh).ingest_paths([docs])
    assert report.count("unchanged") == 3
    assert report.embedded_chunks == 0
    assert "model" not in fresh.__dict__, "an unchanged run must not load the model"


def test_changed_file_replaces_its_chunks(store_settings: Settings, embedder: Embedder, docs: Path) -> None:
    ingestor = ingestor_for(store_settings, embedder)
    ingestor.ingest_paths([docs])
    write(docs / "handbook.md", handbook(version=2))
    report = ingestor.ingest_paths([docs])
    assert [(f.source, f.outcome) for f in report.of("updated")] == [("handbook.md", "updated")]
    assert report.count("unchanged") == 2
    store = ingestor.store
    texts = " ".join(c.text for c in store.all_chunks())
    assert "28 days" in texts and "25 days" not in texts
    assert len(store.documents()) == 3
    assert_consistent(store)


def test_delete_and_prune(store_settings: Settings, embedder: Embedder, docs: Path) -> None:
    ingestor = ingestor_for(store_settings, embedder)
    ingestor.ingest_paths([docs])
    store = ingestor.store
    deleted = store.delete_document(store.find_source("notes.html").document_id)
    assert deleted.source == "notes.html"
    with pytest.raises(UnknownDocument):
        store.find_source("notes.html")
    assert_consistent(store)

    (docs / "it" / "passwords.txt").unlink()
    report = ingestor.ingest_paths([docs], prune=True)
    assert [f.source for f in report.of("pruned")] == ["it/passwords.txt"]
    assert report.count("added") == 1  # notes.html came back
    assert [d.source for d in store.documents()] == ["handbook.md", "notes.html"]
    assert_consistent(store)


def test_prune_leaves_other_folders_alone(
    store_settings: Settings, embedder: Embedder, tmp_path: Path, docs: Path
) -> None:
    other = tmp_path / "other"
    write(other / "faq.md", "# FAQ\n\nThe VPN is called Tunnelbear Pro.\n")
    ingestor = ingestor_for(store_settings, embedder)
    ingestor.ingest_paths([docs, other])
    (docs / "notes.html").unlink()
    report = ingestor.ingest_paths([docs], prune=True)
    assert [f.source for f in report.of("pruned")] == ["notes.html"]
    assert "faq.md" in {d.source for d in ingestor.store.documents()}


def test_bad_inputs_are_reported_and_lose_nothing(
    store_settings: Settings, embedder: Embedder, docs: Path, tmp_path: Path
) -> None:
    ingestor = ingestor_for(store_settings, embedder)
    ingestor.ingest_paths([docs])
    before = {d.source: d.version for d in ingestor.store.documents()}

    write(docs / "handbook.md", b"caf\xe9 au lait")  # an indexed file turns non-UTF-8
    write(docs / "broken.pdf", b"%PDF-1.7\n1 0 obj << /Type /Catalog >>\ntrailer garbage")
    write(docs / "program.txt", bytes(range(256)) * 4)
    write(docs / "empty.md", "")
    write(docs / "blank.txt", "  \n\n \t\n")
    write(docs / "image.png", b"\x89PNG\r\n\x1a\n")
    write(tmp_path / "secret.md", "# Secret\n\nOutside the root.\n")
    os.symlink(tmp_path / "secret.md", docs / "link.md")
    big = Ingestor(store_settings.model_copy(update={"max_file_mb": 0.001}), embedder=embedder)
    write(docs / "big.txt", "x " * 2000)

    report = big.ingest_paths([docs])
    outcome = {f.source: (f.outcome, f.reason) for f in report.files}
    assert outcome["handbook.md"][0] == "failed" and "not UTF-8" in outcome["handbook.md"][1]
    assert outcome["broken.pdf"][0] == "failed" and "PDF" in outcome["broken.pdf"][1]
    assert outcome["program.txt"][0] == "failed" and "binary" in outcome["program.txt"][1]
    assert outcome["empty.md"] == ("skipped", "empty file")
    assert outcome["blank.txt"] == ("skipped", "empty file")
    assert outcome["image.png"][0] == "skipped" and ".png" in outcome["image.png"][1]
    assert outcome["link.md"][0] == "skipped" and "outside" in outcome["link.md"][1]
    assert outcome["big.txt"][0] == "skipped" and "RAG_MAX_FILE_MB" in outcome["big.txt"][1]
    assert not report.ok
    after = {d.source: d.version for d in big.store.documents()}
    assert after == before, "a failed file must keep its indexed version"
    assert_consistent(big.store)


def test_symlink_inside_root_is_followed(store_settings: Settings, embedder: Embedder, docs: Path) -> None:
    os.symlink(docs / "handbook.md", docs / "alias.md")
    report = ingestor_for(store_settings, embedder).ingest_paths([docs])
    assert report.count("added") == 4


def test_collections_and_embedder_mismatch(store_settings: Settings, embedder: Embedder, docs: Path) -> None:
    ingestor_for(store_settings, embedder).ingest_paths([docs])
    assert store_settings.collection in list_collections(store_settings)
    with pytest.raises(UnknownCollection):
        open_store(store_settings, "no-such-collection", create=False)
    other_model = store_settings.model_copy(update={"embed_model": "/models/some-other-model"})
    with pytest.raises(EmbedderMismatch, match="RAG_EMBED_MODEL"):
        open_store(other_model)


def test_report_counts(store_settings: Settings, embedder: Embedder, docs: Path) -> None:
    report: IngestReport = ingestor_for(store_settings, embedder).ingest_paths(
        [docs, docs / "missing-folder"]
    )
    assert report.count("added") == 3
    assert report.of("failed")[0].reason == "no such file or folder"
    assert report.embedded_chunks == sum(f.chunks for f in report.of("added"))
