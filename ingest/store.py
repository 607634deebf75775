"""The Chroma store: chunks with their vectors, and a manifest of documents.

Each ragfirst collection is two Chroma collections: ``rf-NAME-chunks`` (text, metadata and our own
vectors, cosine space) and ``rf-NAME-docs`` (one record per document: source, version, counts).

Chroma has no transactions, so a document is replaced in steps that are each atomic, and readers see
only chunks whose ``version`` equals the version its manifest record names:

1. the record is marked ``dirty`` (and keeps its old version),
2. the new chunks are written under new ids (invisible: their version is not the record's yet),
3. the record switches to the new version: the one write where readers move from old to new,
4. the old chunks are deleted, then ``dirty`` is cleared.

A run killed anywhere leaves a dirty record; :meth:`ChunkStore.repair` (run before every ingest)
deletes the chunks it does not name, so a document is never missing, doubled or half there.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlparse

import numpy as np

from ingest.errors import (
    EmbedderMismatch,
    IngestError,
    StoreError,
    UnknownCollection,
    UnknownDocument,
)
from ingest.failpoints import failpoint
from ingest.settings import Settings, validate_collection_name
from ingest.types import Chunk, IndexedDocument, document_id

if TYPE_CHECKING:
    import httpx
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

PREFIX = "rf-"
CHUNKS_SUFFIX = "-chunks"
DOCS_SUFFIX = "-docs"
# The manifest needs no vectors, but Chroma stores none without one: every record gets this constant.
MANIFEST_VECTOR = [1.0]
REVISION_ID = "_revision"


@dataclass(frozen=True)
class StoredChunk:
    """A chunk as read back from the store, with its distance when it came from a query."""

    chunk_id: str
    text: str
    metadata: dict[str, Any]
    distance: float | None = None

    @property
    def document_id(self) -> str:
        return str(self.metadata["document_id"])

    @property
    def source(self) -> str:
        return str(self.metadata["source"])


_clients: dict[str, ClientAPI] = {}
_clients_lock = threading.Lock()


def chroma_client(settings: Settings) -> ClientAPI:
    """The one Chroma client of this process for the configured store (Chroma wants one per path)."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    key = settings.chroma_url or str(settings.chroma_path.resolve())
    with _clients_lock:
        client = _clients.get(key)
        if client is not None:
            return client
        chroma_settings = ChromaSettings(anonymized_telemetry=False)
        try:
            if settings.chroma_url:
                url = urlparse(settings.chroma_url)
                client = chromadb.HttpClient(
                    host=url.hostname or "localhost",
                    port=url.port or (443 if url.scheme == "https" else 8000),
                    ssl=url.scheme == "https",
                    settings=chroma_settings,
                )
            else:
                settings.chroma_path.mkdir(parents=True, exist_ok=True)
                client = chromadb.PersistentClient(path=str(settings.chroma_path), settings=chroma_settings)
        except Exception as exc:  # chromadb raises ValueError, ConnectionError, its own errors...
            raise StoreError(f"cannot open the Chroma store at {key}: {_reason(exc)}") from exc
        if settings.chroma_url:
            _bound_http_timeout(client, settings.chroma_timeout_s)
        _clients[key] = client
        return client


def _bound_http_timeout(client: ClientAPI, seconds: float) -> None:
    """Give the HTTP client's session a timeout: chromadb builds it with none, so a Chroma server
    that hangs (stopped, swapping, a dead peer without a reset) would hang every request with it."""
    import httpx

    session = getattr(getattr(client, "_server", None), "_session", None)
    if isinstance(session, httpx.Client):
        session.timeout = httpx.Timeout(seconds, connect=min(seconds, 5.0))


def _reason(exc: Exception) -> str:
    """A store failure as a user reads it: an unreachable or silent server says so and where."""
    import httpx

    if isinstance(exc, httpx.TimeoutException):
        return f"the Chroma server at {_origin(exc)} did not answer in time (RAG_CHROMA_TIMEOUT_S)"
    if isinstance(exc, httpx.TransportError):
        return f"cannot reach the Chroma server at {_origin(exc)} ({type(exc).__name__}: {exc})"
    return str(exc)


def _origin(exc: httpx.RequestError) -> str:
    try:
        url = exc.request.url
    except RuntimeError:  # an error raised before a request existed
        return "RAG_CHROMA_URL"
    return f"{url.scheme}://{url.netloc.decode()}"


def list_collections(settings: Settings) -> list[str]:
    """Names of the ragfirst collections in the store.

    :raises StoreError: the store cannot be reached.
    """
    client = chroma_client(settings)
    try:
        found = client.list_collections()
    except Exception as exc:
        raise StoreError(f"cannot list the collections of the Chroma store: {_reason(exc)}") from exc
    names = []
    for collection in found:
        name = collection if isinstance(collection, str) else collection.name
        if name.startswith(PREFIX) and name.endswith(DOCS_SUFFIX):
            names.append(name[len(PREFIX) : -len(DOCS_SUFFIX)])
    return sorted(names)


def open_store(settings: Settings, collection: str | None = None, *, create: bool = True) -> ChunkStore:
    """The store of one ragfirst collection, created on first use when ``create`` is true.

    :raises UnknownCollection: the collection does not exist and ``create`` is false.
    :raises StoreError: the store cannot be reached.
    :raises EmbedderMismatch: the collection was built with another embedding model.
    """
    name = validate_collection_name(collection or settings.collection)
    client = chroma_client(settings)
    try:
        if create:
            chunks = client.get_or_create_collection(
                PREFIX + name + CHUNKS_SUFFIX,
                embedding_function=None,
                configuration={"hnsw": {"space": "cosine"}},
                metadata={"embed_model": settings.embed_model},
            )
            docs = client.get_or_create_collection(PREFIX + name + DOCS_SUFFIX, embedding_function=None)
        else:
            chunks = client.get_collection(PREFIX + name + CHUNKS_SUFFIX, embedding_function=None)
            docs = client.get_collection(PREFIX + name + DOCS_SUFFIX, embedding_function=None)
    except Exception as exc:
        if not create and _is_not_found(exc):
            raise UnknownCollection(f"collection {name!r} does not exist") from exc
        raise StoreError(f"cannot open collection {name!r}: {_reason(exc)}") from exc
    built_with = (chunks.metadata or {}).get("embed_model")
    if built_with and built_with != settings.embed_model:
        raise EmbedderMismatch(
            f"collection {name!r} was built with embedding model {built_with!r}, but "
            f"RAG_EMBED_MODEL is {settings.embed_model!r}: set it back, or use another collection"
        )
    max_batch = min(settings.store_batch_size, _max_batch(client))
    space = None
    if not settings.chroma_url and settings.store_min_free_mb > 0:
        space = FreeSpace(settings.chroma_path, int(settings.store_min_free_mb * 2**20))
    return ChunkStore(name, chunks=chunks, docs=docs, max_batch=max_batch, space=space)


def delete_collection(settings: Settings, collection: str) -> None:
    """Drop a ragfirst collection and everything in it."""
    name = validate_collection_name(collection)
    client = chroma_client(settings)
    for suffix in (CHUNKS_SUFFIX, DOCS_SUFFIX):
        try:
            client.delete_collection(PREFIX + name + suffix)
        except Exception as exc:
            if not _is_not_found(exc):
                raise StoreError(f"cannot delete collection {name!r}: {_reason(exc)}") from exc


def _is_not_found(exc: Exception) -> bool:
    return type(exc).__name__ == "NotFoundError" or "does not exist" in str(exc).lower()


def _max_batch(client: ClientAPI) -> int:
    try:
        return max(1, min(int(client.get_max_batch_size()), 5000))
    except Exception:
        return 1000


def _batches(items: Sequence[Any], size: int) -> Iterator[slice]:
    for start in range(0, len(items), size):
        yield slice(start, start + size)


@dataclass(frozen=True)
class FreeSpace:
    """The free space an embedded store's disk must keep for a write to go ahead.

    Chroma 1.5 does not fail cleanly on a full disk: after "database or disk is full" its next
    write never returns, and the store stays wedged until the process dies. Stopping short of
    full is what gives a clear error instead, and keeps what is indexed readable.
    """

    path: Path
    min_bytes: int

    def check(self) -> None:
        """:raises StoreError: less than ``min_bytes`` free on the disk holding ``path``."""
        try:
            stat = os.statvfs(self.path)
        except OSError:
            return  # not created yet, or not a local path: Chroma itself will say what is wrong
        free = stat.f_bavail * stat.f_frsize
        if free < self.min_bytes:
            raise StoreError(
                f"the disk holding the Chroma store at {self.path} has {free / 2**20:.2f} MB free, "
                f"under RAG_STORE_MIN_FREE_MB ({self.min_bytes / 2**20:g} MB): nothing more is "
                "written until space is freed; what is indexed stays as it was"
            )


def chunk_id(doc_id: str, version: str, position: int) -> str:
    """Chunk ids carry the document version, so a new version never overwrites the live one."""
    return f"{doc_id}:{version}:{position:05d}"


class ChunkStore:
    """Chunks and document records of one collection, with crash-safe replacement.

    Example::

        store = open_store(settings, "handbook")
        store.replace_document(source="hr/leave.md", title="Leave", filetype="markdown",
                               version=v, root="/docs", chunks=chunks, vectors=vectors)
        hits = store.query(embedder.embed_query("parental leave"), k=5)
    """

    def __init__(
        self,
        name: str,
        *,
        chunks: Collection,
        docs: Collection,
        max_batch: int,
        space: FreeSpace | None = None,
    ) -> None:
        self.name = name
        self.chunks = chunks
        self.docs = docs
        self.max_batch = max_batch
        self.space = space

    # --- documents ----------------------------------------------------------------------------

    def documents(self) -> list[IndexedDocument]:
        """Every document that is fully indexed, sorted by source."""
        records = self._call(lambda: self.docs.get(include=["metadatas"]))
        docs = [
            _indexed(rid, meta)
            for rid, meta in zip(records["ids"], records["metadatas"] or [], strict=True)
            if rid != REVISION_ID and meta and meta.get("version")
        ]
        return sorted(docs, key=lambda d: d.source)

    def get_document(self, doc_id: str) -> IndexedDocument:
        """:raises UnknownDocument: no indexed document has that id."""
        records = self._call(lambda: self.docs.get(ids=[doc_id], include=["metadatas"]))
        metas = records["metadatas"] or []
        if not records["ids"] or not metas or not metas[0] or not metas[0].get("version"):
            raise UnknownDocument(f"no document {doc_id!r} in collection {self.name!r}")
        return _indexed(records["ids"][0], metas[0])

    def find_source(self, source: str) -> IndexedDocument:
        """:raises UnknownDocument: no indexed document has that source."""
        return self.get_document(document_id(source))

    def live_versions(self, doc_ids: Iterable[str]) -> dict[str, str]:
        """The version readers may see for each of ``doc_ids`` (absent: not indexed)."""
        ids = sorted(set(doc_ids))
        if not ids:
            return {}
        records = self._call(lambda: self.docs.get(ids=ids, include=["metadatas"]))
        return {
            rid: str(meta["version"])
            for rid, meta in zip(records["ids"], records["metadatas"] or [], strict=True)
            if meta and meta.get("version")
        }

    def revision(self) -> str:
        """A token that changes whenever any document is added, replaced or deleted."""
        records = self._call(lambda: self.docs.get(ids=[REVISION_ID], include=["metadatas"]))
        metas = records["metadatas"] or []
        return str(metas[0].get("revision", "")) if metas and metas[0] else ""

    def replace_document(
        self,
        *,
        source: str,
        title: str,
        filetype: str,
        version: str,
        root: str,
        chunks: Sequence[Chunk],
        vectors: Sequence[Sequence[float]],
        extra: dict[str, str | int | float | bool] | None = None,
        text_hashes: Sequence[str] | None = None,
    ) -> IndexedDocument:
        """Make ``chunks`` the indexed content of ``source``, in place of whatever was there.

        ``text_hashes`` (one per chunk) name what each vector was computed from, so that a later
        version can take a vector from :meth:`vectors_by_text_hash` instead of embedding again.
        """
        if len(chunks) != len(vectors) or (text_hashes is not None and len(text_hashes) != len(chunks)):
            raise ValueError("one vector (and text hash) per chunk")
        doc_id = document_id(source)
        old = self._record(doc_id)
        old_meta = dict(old or {})
        self._put_record(
            doc_id,
            {**old_meta, "source": source, "version": old_meta.get("version", ""), "dirty": True},
        )
        failpoint("replace:marked-dirty")
        ids = [chunk_id(doc_id, version, c.position) for c in chunks]
        metas = [_chunk_metadata(c, doc_id, source, title, filetype, version, extra) for c in chunks]
        if text_hashes is not None:
            for meta, digest in zip(metas, text_hashes, strict=True):
                meta["text_hash"] = digest
        texts = [c.text for c in chunks]

        def write(part: slice) -> None:
            self.chunks.upsert(
                ids=ids[part],
                embeddings=_matrix(vectors[part]),
                documents=texts[part],
                metadatas=cast(Any, metas[part]),
            )

        for part in _batches(ids, self.max_batch):
            self._write(lambda part=part: write(part))
            failpoint("replace:wrote-batch")
        record: dict[str, Any] = {
            "source": source,
            "title": title,
            "filetype": filetype,
            "version": version,
            "chunks": len(chunks),
            "root": root,
            "indexed_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "dirty": True,
            **(extra or {}),
        }
        self._put_record(doc_id, record)
        failpoint("replace:switched")
        # Only the version this call replaced: a concurrent writer's newer chunks must survive, and an
        # orphan left by such a race is invisible (its version is named by no record).
        old_version = str(old_meta.get("version") or "")
        if old_version and old_version != version:
            self._write(
                lambda: self.chunks.delete(
                    where={"$and": [{"document_id": doc_id}, {"version": old_version}]}
                )
            )
        failpoint("replace:deleted-old")
        self._put_record(doc_id, {**record, "dirty": False}, bump=True)
        return _indexed(doc_id, record)

    def vectors_by_text_hash(self, doc_id: str) -> dict[str, list[float]]:
        """The stored vectors of ``doc_id``'s chunks, keyed by the ``text_hash`` they were written with.

        Any version counts, not only the visible one: a vector is right for its text hash whichever
        version holds it. Chunks written without a hash (by ragfirst before it kept them) are left out.
        """
        page = self._call(
            lambda: self.chunks.get(where={"document_id": doc_id}, include=["embeddings", "metadatas"])
        )
        embeddings = page["embeddings"]
        if embeddings is None:
            return {}
        found: dict[str, list[float]] = {}
        for meta, vector in zip(page["metadatas"] or [], embeddings, strict=True):
            digest = (meta or {}).get("text_hash")
            if isinstance(digest, str) and digest:
                found[digest] = np.asarray(vector, dtype=np.float32).tolist()
        return found

    def delete_document(self, doc_id: str) -> IndexedDocument:
        """Remove a document and all its chunks.

        :raises UnknownDocument: no indexed document has that id.
        """
        doc = self.get_document(doc_id)
        self._put_record(doc_id, {"source": doc.source, "version": "", "dirty": True})
        self._delete_other_versions(doc_id, "")
        failpoint("delete:deleted-chunks")
        self._write(lambda: self.docs.delete(ids=[doc_id]))
        self._bump_revision()
        return doc

    def repair(self) -> int:
        """Finish or undo what a killed run left: returns how many documents needed it."""
        records = self._call(lambda: self.docs.get(where={"dirty": True}, include=["metadatas"]))
        for rid, meta in zip(records["ids"], records["metadatas"] or [], strict=True):
            version = str((meta or {}).get("version") or "")
            self._delete_other_versions(rid, version)
            if version:
                self._put_record(rid, {**dict(meta or {}), "dirty": False})
            else:
                self._write(lambda rid=rid: self.docs.delete(ids=[rid]))
        if records["ids"]:
            self._bump_revision()
        return len(records["ids"])

    # --- chunks -------------------------------------------------------------------------------

    def count(self) -> int:
        """Chunks stored, including any not yet visible; see :meth:`all_chunks` for the visible ones."""
        return int(self._call(self.chunks.count))

    def all_chunks(self, *, batch: int = 5000) -> list[StoredChunk]:
        """Every visible chunk with its text and metadata, for building derived indexes."""
        out: list[StoredChunk] = []
        offset = 0
        while True:
            page = self._call(
                lambda offset=offset: self.chunks.get(
                    include=["documents", "metadatas"], limit=batch, offset=offset
                )
            )
            out.extend(_stored(page["ids"], page["documents"], page["metadatas"]))
            if len(page["ids"]) < batch:
                break
            offset += batch
        return self._visible(out)

    def chunks_of(self, doc_id: str) -> list[StoredChunk]:
        """The visible chunks of one document, in reading order."""
        page = self._call(
            lambda: self.chunks.get(where={"document_id": doc_id}, include=["documents", "metadatas"])
        )
        chunks = self._visible(_stored(page["ids"], page["documents"], page["metadatas"]))
        return sorted(chunks, key=lambda c: int(c.metadata.get("position", 0)))

    def query(
        self, vector: Sequence[float], k: int, *, where: dict[str, Any] | None = None
    ) -> list[StoredChunk]:
        """The ``k`` visible chunks nearest to ``vector``, nearest first."""
        if k <= 0:
            return []
        fetch = k + 8
        while True:
            result = self._call(
                lambda fetch=fetch: self.chunks.query(
                    query_embeddings=_matrix([vector]),
                    n_results=fetch,
                    where=where,
                    include=["documents", "metadatas", "distances"],
                )
            )
            ids = result["ids"][0]
            found = _stored(
                ids,
                (result["documents"] or [[]])[0],
                (result["metadatas"] or [[]])[0],
                (result["distances"] or [[]])[0],
            )
            visible = self._visible(found)
            if len(visible) >= k or len(ids) < fetch:
                return visible[:k]
            fetch *= 4

    # --- internals ----------------------------------------------------------------------------

    def _visible(self, chunks: list[StoredChunk]) -> list[StoredChunk]:
        live = self.live_versions(c.document_id for c in chunks)
        return [c for c in chunks if live.get(c.document_id) == c.metadata.get("version")]

    def _record(self, doc_id: str) -> dict[str, Any] | None:
        records = self._call(lambda: self.docs.get(ids=[doc_id], include=["metadatas"]))
        metas = records["metadatas"] or []
        return dict(metas[0]) if records["ids"] and metas and metas[0] else None

    def _put_record(self, doc_id: str, meta: dict[str, Any], *, bump: bool = False) -> None:
        """Write a document record; with ``bump``, the revision token changes in the same write."""
        ids, metas = [doc_id], [meta]
        if bump:
            ids.append(REVISION_ID)
            metas.append(_revision_meta())
        vectors = _matrix([MANIFEST_VECTOR] * len(ids))
        self._write(lambda: self.docs.upsert(ids=ids, embeddings=vectors, metadatas=cast(Any, metas)))

    def _bump_revision(self) -> None:
        meta = _revision_meta()
        self._write(
            lambda: self.docs.upsert(
                ids=[REVISION_ID], embeddings=_matrix([MANIFEST_VECTOR]), metadatas=[meta]
            )
        )

    def _delete_other_versions(self, doc_id: str, keep: str) -> None:
        where: dict[str, Any] = {"document_id": doc_id}
        if keep:
            where = {"$and": [{"document_id": doc_id}, {"version": {"$ne": keep}}]}
        self._write(lambda: self.chunks.delete(where=where))

    def _write(self, fn: Any) -> Any:
        """A call that writes: refused up front when the embedded store's disk is nearly full."""
        if self.space is not None:
            self.space.check()
        return self._call(fn)

    def _call(self, fn: Any) -> Any:
        try:
            return fn()
        except IngestError:
            raise
        except Exception as exc:  # network errors, Chroma's own, disk full: all a store failure
            raise StoreError(f"Chroma store error in collection {self.name!r}: {_reason(exc)}") from exc


def _matrix(vectors: Sequence[Sequence[float]]) -> np.ndarray[Any, np.dtype[np.float32]]:
    """Vectors as the float32 matrix Chroma stores anyway."""
    return np.asarray(vectors, dtype=np.float32)


def _revision_meta() -> dict[str, Any]:
    return {"revision": uuid.uuid4().hex, "changed_at": datetime.now(UTC).isoformat()}


def _chunk_metadata(
    chunk: Chunk,
    doc_id: str,
    source: str,
    title: str,
    filetype: str,
    version: str,
    extra: dict[str, str | int | float | bool] | None,
) -> dict[str, str | int | float | bool]:
    meta: dict[str, str | int | float | bool] = {
        "document_id": doc_id,
        "source": source,
        "title": title,
        "filetype": filetype,
        "version": version,
        "section": " > ".join(chunk.section),
        "position": chunk.position,
        "start": chunk.start,
        "end": chunk.end,
        "tokens": chunk.tokens,
        **(extra or {}),
    }
    # Chroma metadata has no null: a format without pages simply has no page keys.
    if chunk.page is not None:
        meta["page"] = chunk.page
        meta["page_end"] = chunk.page_end or chunk.page
    return meta


def _stored(
    ids: list[str],
    documents: list[Any] | None,
    metadatas: list[Any] | None,
    distances: list[float] | None = None,
) -> list[StoredChunk]:
    docs = documents or [""] * len(ids)
    metas = metadatas or [{}] * len(ids)
    dists: list[float | None] = list(distances) if distances else [None] * len(ids)
    return [
        StoredChunk(cid, text or "", dict(meta or {}), dist)
        for cid, text, meta, dist in zip(ids, docs, metas, dists, strict=True)
    ]


def _indexed(doc_id: str, meta: dict[str, Any]) -> IndexedDocument:
    return IndexedDocument(
        document_id=doc_id,
        source=str(meta.get("source", "")),
        title=str(meta.get("title", "")),
        filetype=str(meta.get("filetype", "")),
        version=str(meta.get("version", "")),
        chunks=int(meta.get("chunks", 0)),
        root=str(meta.get("root", "")),
        indexed_at=str(meta.get("indexed_at", "")),
    )
