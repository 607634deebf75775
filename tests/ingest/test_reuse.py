"""Work not redone: a changed file keeps the vectors of its unchanged chunks; batching across files
still reports every file in discovery order.

Real embedder, real embedded Chroma; the only wrapper records which texts reach the real model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import ingest.pipeline as pipeline
from ingest.embed import Embedder
from ingest.load import load_document
from ingest.pipeline import Ingestor, document_version
from ingest.settings import Settings
from ingest.split import split_document
from ingest.store import ChunkStore
from ingest.types import FileOutcome, document_id
from tests.ingest.test_pipeline import assert_consistent, write

EXPENSES = " ".join(
    f"Rule {i}: receipts for category {i} are kept for {i + 3} years and approved by the budget owner."
    for i in range(40)
)


def policy(travel: str) -> str:
    """A handbook whose Expenses section spans several chunks; only Travel changes between versions."""
    return (
        "# Staff handbook\n\n"
        "## Leave\n\nEmployees get 25 days of paid vacation each year.\n\n"
        f"## Expenses\n\n{EXPENSES}\n\n"
        f"## Travel\n\n{travel}\n\n"
        "## Security\n\nBadges must be worn visibly on every floor of the building.\n"
    )


V1_TRAVEL = "Train tickets are booked through the travel desk."
V2_TRAVEL = (
    "Flights longer than six hours may be booked in premium economy. "
    "Train tickets are booked through the travel desk, at least a week ahead."
)


class Recorder:
    """Calls the real ``embed_documents`` and remembers what it was asked to embed."""

    def __init__(self, embedder: Embedder) -> None:
        self.inner = embedder.embed_documents
        self.texts: list[str] = []

    def __call__(self, texts: list[str]) -> list[list[float]]:
        self.texts.extend(texts)
        return self.inner(texts)


def hashes_in_order(store: ChunkStore, source: str) -> list[str]:
    return [str(c.metadata["text_hash"]) for c in store.chunks_of(document_id(source))]


def test_changed_section_reuses_the_vectors_of_the_others(
    tmp_path: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = tmp_path / "docs"
    write(docs / "handbook.md", policy(V1_TRAVEL))
    write(docs / "other.md", "# Other\n\nThe cafeteria opens at eight.\n")
    ingestor = Ingestor(Settings(chroma_path=tmp_path / "chroma"), embedder=embedder)
    first = ingestor.ingest_paths([docs])
    assert first.reused_chunks == 0 and first.embedded_chunks == sum(f.chunks for f in first.files)
    store = ingestor.store
    doc_id = document_id("handbook.md")
    before = store.vectors_by_text_hash(doc_id)
    v1_hashes = hashes_in_order(store, "handbook.md")
    assert len(v1_hashes) >= 5, "the Expenses section should span several chunks"

    write(docs / "handbook.md", policy(V2_TRAVEL))
    recorder = Recorder(embedder)
    monkeypatch.setattr(embedder, "embed_documents", recorder)
    report = ingestor.ingest_paths([docs])
    monkeypatch.undo()

    outcomes = [(f.source, f.outcome) for f in report.files]
    assert outcomes == [("handbook.md", "updated"), ("other.md", "unchanged")]
    updated = report.files[0]
    v2_hashes = hashes_in_order(store, "handbook.md")
    unchanged = [h for h in v2_hashes if h in set(v1_hashes)]
    assert len(unchanged) == len(v1_hashes) - 1, "every chunk but Travel's is the same text"
    assert updated.reused == report.reused_chunks == len(unchanged)
    assert report.embedded_chunks == updated.chunks - updated.reused == len(v2_hashes) - len(unchanged)
    # Only the changed section went through the model.
    assert recorder.texts and all("Travel" in t and "premium economy" in t for t in recorder.texts)

    after = store.vectors_by_text_hash(doc_id)
    assert set(after) == set(v2_hashes), "the old version's chunks are gone"
    for digest in unchanged:
        # Equal up to the last bit or so: Chroma's cosine index renormalises what it is given.
        kept, old = np.float32(after[digest]), np.float32(before[digest])
        assert np.abs(kept - old).max() < 1e-6, "a kept vector changed"

    # The same store a fresh ingest of the new file builds: no duplicate, nothing missing.
    assert_consistent(store)
    fresh = Ingestor(Settings(chroma_path=tmp_path / "fresh"), embedder=embedder)
    fresh.ingest_paths([docs])
    assert store.count() == fresh.store.count()
    assert hashes_in_order(fresh.store, "handbook.md") == v2_hashes
    fresh_vectors = fresh.store.vectors_by_text_hash(doc_id)
    for digest in v2_hashes:
        # The int8 backend quantises activations per batch: a text's vector varies a little with the
        # texts embedded alongside it (cosine about 0.99), so "the same" is close, not equal.
        assert float(np.dot(after[digest], fresh_vectors[digest])) > 0.98

    hits = store.query(embedder.embed_query("Can I fly premium economy?"), 1)
    assert "premium economy" in hits[0].text
    hits = store.query(embedder.embed_query("How many vacation days do employees get?"), 1)
    assert "25 days" in hits[0].text


def test_upload_reuses_and_other_embedding_settings_do_not(tmp_path: Path, embedder: Embedder) -> None:
    settings = Settings(chroma_path=tmp_path / "chroma")
    ingestor = Ingestor(settings, embedder=embedder)
    assert ingestor.ingest_bytes(policy(V1_TRAVEL).encode(), source="up.md", root="upload").reused == 0
    again = ingestor.ingest_bytes(policy(V2_TRAVEL).encode(), source="up.md", root="upload")
    assert again.outcome == "updated" and again.reused == again.chunks - 1

    # Vectors made by the other backend are not this configuration's: nothing is kept.
    backend = "torch" if settings.embed_backend != "torch" else "onnx-int8"
    switched = settings.model_copy(update={"embed_backend": backend})
    other = Ingestor(switched, embedder=Embedder(switched))
    redone = other.ingest_bytes(policy(V2_TRAVEL).encode(), source="up.md", root="upload")
    assert redone.outcome == "updated" and redone.reused == 0
    assert_consistent(other.store)


def test_document_indexed_without_text_hashes_reingests(tmp_path: Path, embedder: Embedder) -> None:
    """Chunks written before ragfirst kept text hashes: they are served as ever and simply not reused."""
    docs = tmp_path / "docs"
    path = write(docs / "handbook.md", policy(V1_TRAVEL))
    ingestor = Ingestor(Settings(chroma_path=tmp_path / "chroma"), embedder=embedder)
    data = path.read_bytes()
    doc = load_document(data, "handbook.md")
    chunks = split_document(doc, ingestor.budget)
    store = ingestor.store
    store.replace_document(
        source="handbook.md",
        title=doc.title,
        filetype=doc.filetype,
        version=document_version(data, ingestor.fingerprint),
        root=str(docs.resolve()),
        chunks=chunks,
        vectors=embedder.embed_documents([c.embed_text for c in chunks]),
    )
    assert all("text_hash" not in c.metadata for c in store.all_chunks())
    assert store.vectors_by_text_hash(document_id("handbook.md")) == {}
    hits = store.query(embedder.embed_query("How many vacation days do employees get?"), 1)
    assert "25 days" in hits[0].text
    same = ingestor.ingest_paths([docs])
    assert same.files == [FileOutcome("handbook.md", "unchanged", chunks=len(chunks))]

    write(docs / "handbook.md", policy(V2_TRAVEL))
    report = ingestor.ingest_paths([docs])
    assert report.of("updated")[0].reused == report.reused_chunks == 0
    assert report.embedded_chunks == store.count()
    assert all("text_hash" in c.metadata for c in store.all_chunks())
    assert_consistent(store)
    assert [d.source for d in store.documents()] == ["handbook.md"]

    write(docs / "handbook.md", policy(V1_TRAVEL))  # now it has hashes: the next change reuses
    assert ingestor.ingest_paths([docs]).reused_chunks == store.count() - 1


def many_files(root: Path) -> list[str]:
    """Twelve small documents with a failure, a skip and an unsupported file in the middle."""
    names = []
    for i in range(12):
        name = f"doc{i:02d}.md"
        if i == 4:
            write(root / name, b"caf\xe9 au lait")  # not UTF-8: fails
        elif i == 7:
            write(root / name, "")  # empty: skipped
        else:
            write(root / name, f"# Doc {i}\n\nFact {i}: the meeting room {i} seats {i + 4} people.\n")
        names.append(name)
    write(root / "image.png", b"\x89PNG\r\n\x1a\n")
    return names


def test_outcomes_come_in_discovery_order_across_batches(
    tmp_path: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "docs"
    names = many_files(root)
    monkeypatch.setattr(pipeline, "EMBED_BATCH_CHUNKS", 3)  # several batches around the failure
    ingestor = Ingestor(Settings(chroma_path=tmp_path / "chroma"), embedder=embedder)
    progress: list[tuple[int, int, str]] = []
    report = ingestor.ingest_paths([root], on_progress=lambda d, t, s: progress.append((d, t, s)))

    assert report.files[0].source == "image.png" and report.files[0].outcome == "skipped"
    outcomes = [(f.source, f.outcome) for f in report.files[1:]]
    expected = ["failed" if i == 4 else "skipped" if i == 7 else "added" for i in range(12)]
    assert outcomes == list(zip(names, expected, strict=True))
    assert "not UTF-8" in report.files[5].reason
    assert progress == [(i, 12, name) for i, name in enumerate(names)] + [(12, 12, "")]
    assert report.embedded_chunks == ingestor.store.count() == 10
    assert_consistent(ingestor.store)


def test_batches_sorted_by_length_return_vectors_in_chunk_order(tmp_path: Path, embedder: Embedder) -> None:
    ingestor = Ingestor(Settings(chroma_path=tmp_path / "chroma"), embedder=embedder)
    chunks = split_document(load_document(policy(V2_TRAVEL).encode(), "h.md"), ingestor.budget)
    assert len({c.tokens for c in chunks}) > 2, "chunks of several lengths, so sorting reorders them"
    vectors = np.array(ingestor._embed(chunks))
    one_by_one = np.array([embedder.embed_documents([c.embed_text])[0] for c in chunks])
    assert ((vectors * one_by_one).sum(axis=1) > 0.98).all()
