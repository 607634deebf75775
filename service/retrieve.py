"""Find the passages that answer a question: dense (Chroma) and keyword (BM25), fused, then merged.

Chroma is the source of truth. The BM25 index is derived from the chunks stored there and rebuilt
when the collection's revision token changes, so an ingest by another process shows up here without
a restart (checked at most every ``REVISION_CHECK_S`` seconds).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ingest.embed import Embedder
from ingest.store import ChunkStore, StoredChunk
from service.errors import BadRequest
from service.types import Source

# Reciprocal rank fusion constant. 60 is the value of Cormack et al. (2009): it damps the weight of
# the very first ranks so that one retriever's top hit cannot outvote agreement further down.
RRF_K = 60
REVISION_CHECK_S = 1.0
# Neighbouring chunks are merged into one source when at most this many characters lie between them
# (the whitespace the splitter stripped); anything longer may hold a heading and stays apart.
MERGE_GAP = 2
# A chunk of a document that declares itself superseded counts this much in fusion: it still answers
# "what did the old policy say", but never outranks the current version on equal evidence.
SUPERSEDED_WEIGHT = 0.5


@dataclass(frozen=True)
class Filters:
    """Metadata filters applied to both retrievers.

    :param source_prefix: keep documents whose source starts with this (``hr/``).
    :param filetypes: keep these types (``markdown``, ``text``, ``html``, ``pdf``, ``docx``).
    :param tags: keep documents carrying all of these tags (Markdown front matter ``tags:``).
    """

    source_prefix: str | None = None
    filetypes: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()

    @classmethod
    def parse(cls, raw: dict[str, Any] | None) -> Filters:
        """:raises BadRequest: unknown keys or values of the wrong type."""
        if not raw:
            return cls()
        unknown = set(raw) - {"source_prefix", "filetype", "filetypes", "tags"}
        if unknown:
            raise BadRequest(f"unknown filter(s): {', '.join(sorted(unknown))}; "
                             "use source_prefix, filetype or tags")  # fmt: skip
        prefix = raw.get("source_prefix")
        if prefix is not None and not isinstance(prefix, str):
            raise BadRequest("filter source_prefix must be a string")
        types = raw.get("filetypes", raw.get("filetype", ()))
        tags = raw.get("tags", ())
        types = (types,) if isinstance(types, str) else types
        tags = (tags,) if isinstance(tags, str) else tags
        for name, values in (("filetype", types), ("tags", tags)):
            if not isinstance(values, list | tuple) or not all(isinstance(v, str) for v in values):
                raise BadRequest(f"filter {name} must be a string or a list of strings")
        return cls(prefix or None, tuple(types), tuple(tags))

    def __bool__(self) -> bool:
        return bool(self.source_prefix or self.filetypes or self.tags)

    def matches(self, meta: dict[str, Any]) -> bool:
        if self.source_prefix and not str(meta.get("source", "")).startswith(self.source_prefix):
            return False
        if self.filetypes and meta.get("filetype") not in self.filetypes:
            return False
        if self.tags:
            have = set(str(meta.get("tags") or "").strip(",").split(","))
            if not set(self.tags) <= have:
                return False
        return True


NO_FILTERS = Filters()


@dataclass(frozen=True)
class ScoredChunk:
    chunk: StoredChunk
    score: float


class Retriever(Protocol):
    def retrieve(self, query: str, k: int, filters: Filters = ...) -> list[ScoredChunk]: ...


class DenseRetriever:
    """Nearest chunks by embedding; ``score`` is cosine similarity."""

    def __init__(self, store: ChunkStore, embedder: Embedder) -> None:
        self.store = store
        self.embedder = embedder

    def retrieve(self, query: str, k: int, filters: Filters = NO_FILTERS) -> list[ScoredChunk]:
        return self.retrieve_vector(self.embedder.embed_query(query), k, filters)

    def retrieve_vector(
        self, vector: Sequence[float], k: int, filters: Filters = NO_FILTERS
    ) -> list[ScoredChunk]:
        # Filtering after an over-fetch is far cheaper than Chroma's metadata `where` at scale; a
        # filter that keeps too little falls back to `where` on the matching types.
        fetch = k * 4 if filters else k
        hits = [h for h in self.store.query(vector, fetch) if filters.matches(h.metadata)]
        if filters and len(hits) < k:
            where = {"filetype": {"$in": list(filters.filetypes)}} if filters.filetypes else None
            hits = [h for h in self.store.query(vector, k * 20, where=where) if filters.matches(h.metadata)]
        return [ScoredChunk(h, 1.0 - float(h.distance or 0.0)) for h in hits[:k]]


_TOKEN = re.compile(r"[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*")
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "do",
        "does",
        "for",
        "from",
        "how",
        "i",
        "in",
        "is",
        "it",
        "of",
        "on",
        "or",
        "our",
        "the",
        "this",
        "to",
        "was",
        "we",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "you",
        "your",
        "can",
        "my",
        "me",
    ]
)


def keyword_tokens(text: str) -> list[str]:
    """Lower-cased words and identifiers (``pg_dump``, ``v2.3.1`` stay whole), minus stopwords."""
    return [t for t in (m.group(0).lower() for m in _TOKEN.finditer(text)) if t not in _STOPWORDS]


@dataclass
class _Bm25:
    revision: str
    chunks: list[StoredChunk]
    model: Any


class KeywordRetriever:
    """BM25 (``bm25s``) over the title, section and text of every visible chunk in the store."""

    def __init__(self, store: ChunkStore) -> None:
        self.store = store
        self._index: _Bm25 | None = None
        self._checked_at = 0.0
        self._lock = threading.Lock()

    def _current(self) -> _Bm25:
        now = time.monotonic()
        index = self._index
        if index is not None and now - self._checked_at < REVISION_CHECK_S:
            return index
        with self._lock:
            revision = self.store.revision()
            self._checked_at = time.monotonic()
            if self._index is None or self._index.revision != revision:
                self._index = self._build(revision)
            return self._index

    def _build(self, revision: str) -> _Bm25:
        import logging

        import bm25s

        logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every build at DEBUG

        chunks = self.store.all_chunks()
        if not chunks:
            return _Bm25(revision, [], None)
        corpus = [
            keyword_tokens(f"{c.metadata.get('title', '')} {c.metadata.get('section', '')} {c.text}")
            for c in chunks
        ]
        model = bm25s.BM25()
        model.index(corpus, show_progress=False)
        return _Bm25(revision, chunks, model)

    def invalidate(self) -> None:
        """Check the store's revision on the next query rather than up to a second later: this process
        just wrote to the collection, and its own next search must see that."""
        self._checked_at = 0.0

    def refresh(self) -> None:
        """Rebuild now if the store changed (otherwise the next query notices within a second)."""
        self._checked_at = 0.0
        self._current()

    def retrieve(self, query: str, k: int, filters: Filters = NO_FILTERS) -> list[ScoredChunk]:
        index = self._current()
        tokens = keyword_tokens(query)
        if index.model is None or not tokens:
            return []
        n = len(index.chunks)
        fetch = min(n, k * 4 if filters else k)
        results, scores = index.model.retrieve([tokens], k=fetch, show_progress=False, n_threads=1)
        out = []
        for i, score in zip(results[0], scores[0], strict=True):
            chunk = index.chunks[int(i)]
            if score > 0 and filters.matches(chunk.metadata):
                out.append(ScoredChunk(chunk, float(score)))
        return out[:k]


@dataclass
class Retrieval:
    """What retrieval found: numbered sources, and the best dense similarity (the coverage signal)."""

    sources: list[Source]
    best_similarity: float
    timings_ms: dict[str, float] = field(default_factory=dict)


class HybridRetriever:
    """Dense and keyword results fused by reciprocal rank fusion, neighbours merged.

    Example::

        retriever = HybridRetriever(store, embedder)
        found = retriever.search("How many vacation days?", k=5)
        found.sources[0].source  # 'hr/handbook.md'
    """

    def __init__(self, store: ChunkStore, embedder: Embedder) -> None:
        self.store = store
        self.embedder = embedder
        self.dense = DenseRetriever(store, embedder)
        self.keyword = KeywordRetriever(store)

    def search(self, query: str, k: int, filters: Filters = NO_FILTERS) -> Retrieval:
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        vector = self.embedder.embed_query(query)
        t1 = time.perf_counter()
        pool = max(k * 3, 20)
        dense = self.dense.retrieve_vector(vector, pool, filters)
        t2 = time.perf_counter()
        keyword = self.keyword.retrieve(query, pool, filters)
        t3 = time.perf_counter()
        fused = fuse([dense, keyword])[:k]
        sources = merge_neighbours(fused)
        t4 = time.perf_counter()
        timings.update(
            embed=(t1 - t0) * 1000, search=(t2 - t1) * 1000, keyword=(t3 - t2) * 1000, fuse=(t4 - t3) * 1000
        )
        best = max((h.score for h in dense), default=0.0)
        return Retrieval(sources, best, timings)


def fuse(rankings: Sequence[Sequence[ScoredChunk]]) -> list[ScoredChunk]:
    """Reciprocal rank fusion: each chunk scores the sum of ``1 / (RRF_K + rank)`` over rankings
    (times ``SUPERSEDED_WEIGHT`` for superseded documents)."""
    scores: dict[str, float] = {}
    chunks: dict[str, StoredChunk] = {}
    for ranking in rankings:
        for rank, hit in enumerate(ranking, start=1):
            weight = SUPERSEDED_WEIGHT if hit.chunk.metadata.get("superseded") else 1.0
            scores[hit.chunk.chunk_id] = scores.get(hit.chunk.chunk_id, 0.0) + weight / (RRF_K + rank)
            chunks[hit.chunk.chunk_id] = hit.chunk
    order = sorted(scores, key=lambda cid: (-scores[cid], cid))
    return [ScoredChunk(chunks[cid], scores[cid]) for cid in order]


def merge_neighbours(hits: Sequence[ScoredChunk]) -> list[Source]:
    """Numbered sources in rank order; overlapping or touching chunks of one document become one.

    Merged text keeps document offsets exact: a gap of stripped whitespace is refilled with as many
    spaces, so ``start + i`` still points at the document's own character ``i`` of the source.
    """
    groups: list[list[ScoredChunk]] = []
    for hit in hits:
        meta = hit.chunk.metadata
        for group in groups:
            if group[0].chunk.document_id != hit.chunk.document_id:
                continue
            lo = min(int(g.chunk.metadata["start"]) for g in group)
            hi = max(int(g.chunk.metadata["end"]) for g in group)
            if int(meta["start"]) <= hi + MERGE_GAP and int(meta["end"]) >= lo - MERGE_GAP:
                group.append(hit)
                break
        else:
            groups.append([hit])
    sources = []
    for n, group in enumerate(groups, start=1):
        parts = sorted(group, key=lambda g: int(g.chunk.metadata["start"]))
        first = parts[0].chunk.metadata
        start = int(first["start"])
        text = ""
        for part in parts:
            p_start, p_text = int(part.chunk.metadata["start"]), part.chunk.text
            end_so_far = start + len(text)
            if p_start > end_so_far:
                text += " " * (p_start - end_so_far) + p_text
            elif p_start + len(p_text) > end_so_far:
                text += p_text[end_so_far - p_start :]
        page = first.get("page")
        sources.append(
            Source(
                n=n,
                chunk_ids=tuple(p.chunk.chunk_id for p in parts),
                document_id=str(first["document_id"]),
                source=str(first["source"]),
                title=str(first.get("title", "")),
                section=str(first.get("section", "")),
                page=int(page) if page is not None else None,
                text=text,
                start=start,
                end=start + len(text),
                score=max(g.score for g in group),
                filetype=str(first.get("filetype", "")),
                superseded=bool(first.get("superseded", False)),
            )
        )
    return sources
