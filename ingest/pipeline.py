"""Ingest files and folders into a collection: discover, load, split, embed, store.

The CLI and the service's upload route both call into here, so a document indexed either way is the
same. Unchanged files cost a hash: no parse, no split, no model. In a changed file, a chunk whose
embedded text is the same as one of the version it replaces keeps that chunk's vector.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ingest.embed import Embedder
from ingest.errors import (
    EmptyDocument,
    FileTooLarge,
    IngestError,
    OutsideRoot,
    SkippedFile,
    UnknownDocument,
    UnsupportedFormat,
)
from ingest.load import is_supported, load_document
from ingest.settings import Settings
from ingest.split import TokenBudget, split_document
from ingest.store import ChunkStore, open_store
from ingest.types import Chunk, FileOutcome, IndexedDocument, IngestReport, LoadedDocument, document_id

# Bump when loading or splitting changes what a file becomes, so every file is indexed again.
PIPELINE_VERSION = "3"

ProgressCallback = Callable[[int, int, str], None]
Vector = list[float]
# Chunks to embed gathered across files before they go to the model: full batches keep it busy, and
# the more there are, the closer in length the chunks of each batch (1024: 2% padding, 256: 7%).
EMBED_BATCH_CHUNKS = 1024


def _tags(tags: tuple[str, ...]) -> str:
    return f",{','.join(tags)}," if tags else ""


@dataclass(frozen=True)
class Prepared:
    """A document loaded and split, waiting for its vectors."""

    source: str
    root: str
    version: str
    doc: LoadedDocument
    chunks: list[Chunk]
    replaces: bool
    # One per chunk: what its vector is computed from (see text_hash).
    hashes: list[str]


@dataclass
class Staged:
    """A prepared document in a batch, with the vectors it can keep from the version it replaces."""

    prepared: Prepared
    kept: dict[str, Vector] = field(default_factory=dict)

    @property
    def misses(self) -> int:
        return sum(1 for h in self.prepared.hashes if h not in self.kept)


@dataclass(frozen=True)
class SourceFile:
    """A file found under a root; ``source`` is its path relative to that root, with ``/``."""

    path: Path
    source: str
    root: Path


@dataclass(frozen=True)
class Discovery:
    files: list[SourceFile]
    skipped: list[FileOutcome]
    roots: list[Path]


def discover(paths: Sequence[Path]) -> Discovery:
    """Files to ingest under ``paths`` (files or folders, searched recursively), and files skipped.

    Hidden files and folders are not searched. A symlink is followed only when it resolves inside
    the folder that was given.
    """
    files: list[SourceFile] = []
    skipped: list[FileOutcome] = []
    roots: list[Path] = []
    for given in paths:
        if given.is_dir():
            root = given.resolve()
            roots.append(root)
            for folder, dirnames, filenames in os.walk(root):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for name in sorted(filenames):
                    if name.startswith("."):
                        continue
                    path = Path(folder) / name
                    _classify(path, path.relative_to(root).as_posix(), root, files, skipped)
                for name in dirnames:
                    if (Path(folder) / name).is_symlink():
                        rel = (Path(folder) / name).relative_to(root).as_posix()
                        skipped.append(FileOutcome(rel, "skipped", "symlinked folder not followed"))
        elif given.exists() or given.is_symlink():
            _classify(given, given.name, given.parent.resolve(), files, skipped)
        else:
            skipped.append(FileOutcome(str(given), "failed", "no such file or folder"))
    return Discovery(files, skipped, roots)


def _classify(
    path: Path, source: str, root: Path, files: list[SourceFile], skipped: list[FileOutcome]
) -> None:
    if path.is_symlink():
        target = path.resolve()
        if not target.is_relative_to(root):
            reason = OutsideRoot(f"symlink points outside {root} (to {target})")
            skipped.append(FileOutcome(source, "skipped", str(reason)))
            return
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        skipped.append(FileOutcome(source, "failed", f"cannot read: {exc.strerror}"))
        return
    if not stat.S_ISREG(mode):
        skipped.append(FileOutcome(source, "skipped", "not a regular file"))
    elif not is_supported(path.name):
        unsupported = UnsupportedFormat(f"unsupported file type {path.suffix or '(none)'}")
        skipped.append(FileOutcome(source, "skipped", str(unsupported)))
    else:
        files.append(SourceFile(path, source, root))


def config_fingerprint(settings: Settings) -> str:
    """Everything besides the bytes that decides what a file's chunks and vectors are."""
    return "|".join(
        [
            PIPELINE_VERSION,
            settings.embed_model,
            settings.embed_backend,
            settings.embed_document_prefix,
            str(settings.chunk_max_tokens),
            str(settings.chunk_overlap_tokens),
            str(settings.max_heading_tokens),
        ]
    )


def vector_fingerprint(settings: Settings) -> str:
    """Everything besides a chunk's embedded text that decides its vector."""
    return "|".join([settings.embed_model, settings.embed_backend, settings.embed_document_prefix])


def text_hash(embed_text: str, fingerprint: str) -> str:
    """The key under which a chunk's vector may be reused: its embedded text and how it is embedded."""
    digest = hashlib.sha256(fingerprint.encode())
    digest.update(b"\0" + embed_text.encode())
    return digest.hexdigest()[:32]


def document_version(data: bytes, fingerprint: str) -> str:
    digest = hashlib.sha256(data)
    digest.update(b"\0" + fingerprint.encode())
    return digest.hexdigest()[:20]


class Ingestor:
    """Indexes documents into one collection; holds the embedder and store for a run or a process.

    Example::

        ingestor = Ingestor(settings, collection="handbook")
        report = ingestor.ingest_paths([Path("docs/")], prune=True)
        print(report.count("added"), "added")
    """

    def __init__(
        self,
        settings: Settings,
        *,
        collection: str | None = None,
        embedder: Embedder | None = None,
        store: ChunkStore | None = None,
    ) -> None:
        self.settings = settings
        self.embedder = embedder or Embedder(settings)
        self.store = store or open_store(settings, collection)
        self.fingerprint = config_fingerprint(settings)
        self.vector_fingerprint = vector_fingerprint(settings)

    @property
    def budget(self) -> TokenBudget:
        embedder = self.embedder
        return TokenBudget(
            count=embedder.count_tokens,
            max_tokens=embedder.max_tokens,
            overlap=self.settings.chunk_overlap_tokens,
            max_prefix=self.settings.max_heading_tokens,
            reserved=embedder.count_tokens(embedder.document_prefix) if embedder.document_prefix else 0,
        )

    def ingest_paths(
        self,
        paths: Sequence[Path],
        *,
        prune: bool = False,
        on_progress: ProgressCallback | None = None,
    ) -> IngestReport:
        """Index every supported file under ``paths``; with ``prune``, drop documents whose files
        are gone from the given folders. One file's failure never stops the run.

        Chunks to embed are gathered across files until there are ``EMBED_BATCH_CHUNKS`` (the model is
        far faster on full batches), then each document is stored on its own, crash-safe. Outcomes
        are reported in discovery order.
        """
        report = IngestReport(collection=self.store.name)
        report.repaired = self.store.repair()
        found = discover(paths)
        report.files.extend(found.skipped)
        known = {doc.document_id: doc for doc in self.store.documents()}
        seen: dict[str, SourceFile] = {}
        total = len(found.files)
        # One slot per file, in discovery order; a stored document's outcome arrives with its batch.
        outcomes: list[FileOutcome | None] = []
        pending: list[tuple[int, Staged]] = []

        def flush() -> None:
            stored = self._store_all([staged for _, staged in pending])
            for (slot, _), outcome in zip(pending, stored, strict=True):
                outcomes[slot] = outcome
                if outcome.outcome in ("added", "updated"):
                    report.embedded_chunks += outcome.chunks - outcome.reused
                    report.reused_chunks += outcome.reused
            pending.clear()

        # Reading and splitting the next files in a thread while a batch is embedded measured slower
        # on 2 cores: the embedder already keeps both busy, and the two only contend.
        for done, item in enumerate(found.files):
            if on_progress:
                on_progress(done, total, item.source)
            if item.source in seen:
                other = seen[item.source].root / item.source
                outcomes.append(FileOutcome(item.source, "failed", f"same source as {other}"))
                continue
            seen[item.source] = item
            result = self._prepare_file(item, known.get(document_id(item.source)))
            if isinstance(result, FileOutcome):
                outcomes.append(result)
                continue
            outcomes.append(None)
            pending.append((len(outcomes) - 1, self._stage(result)))
            if sum(staged.misses for _, staged in pending) >= EMBED_BATCH_CHUNKS:
                flush()
        flush()
        report.files.extend(o for o in outcomes if o is not None)
        if on_progress:
            on_progress(total, total, "")
        if prune:
            report.files.extend(self._prune(found.roots, set(seen), known.values()))
        return report

    def _prepare_file(self, item: SourceFile, existing: IndexedDocument | None) -> Prepared | FileOutcome:
        try:
            size = item.path.stat().st_size
            if size > self.settings.max_file_bytes:
                raise FileTooLarge(
                    f"file is {size / 2**20:.1f} MB, over the {self.settings.max_file_mb:g} MB "
                    "limit (RAG_MAX_FILE_MB)"
                )
            data = item.path.read_bytes()
        except SkippedFile as exc:
            return FileOutcome(item.source, "skipped", str(exc))
        except OSError as exc:
            return FileOutcome(item.source, "failed", f"cannot read: {exc.strerror or exc}")
        return self._prepare(data, source=item.source, root=str(item.root), existing=existing)

    def _prepare(
        self, data: bytes, *, source: str, root: str, existing: IndexedDocument | None
    ) -> Prepared | FileOutcome:
        """Load and split, unless the indexed version is already this one; errors become outcomes."""
        version = document_version(data, self.fingerprint)
        if existing and existing.version == version:
            return FileOutcome(source, "unchanged", chunks=existing.chunks)
        try:
            doc = load_document(data, source)
            chunks = split_document(doc, self.budget)
            if not chunks:
                raise EmptyDocument("no text besides headings")
        except SkippedFile as exc:
            return FileOutcome(source, "skipped", str(exc))
        except IngestError as exc:
            return FileOutcome(source, "failed", str(exc))
        hashes = [text_hash(c.embed_text, self.vector_fingerprint) for c in chunks]
        return Prepared(source, root, version, doc, chunks, existing is not None, hashes)

    def _stage(self, prepared: Prepared) -> Staged:
        """Find the vectors a changed document can keep: those of its indexed chunks with the same text."""
        if not prepared.replaces:
            return Staged(prepared)
        try:
            stored = self.store.vectors_by_text_hash(document_id(prepared.source))
        except IngestError:
            # Then it is embedded whole; if the store is really down, storing it reports the failure.
            return Staged(prepared)
        wanted = set(prepared.hashes)
        return Staged(prepared, {h: v for h, v in stored.items() if h in wanted})

    def _store_all(self, batch: Sequence[Staged]) -> list[FileOutcome]:
        """Embed, in one call, the chunks of every staged document that kept no vector, then store
        each document. A text that occurs twice in the batch is embedded once."""
        missing: dict[str, Chunk] = {}
        for staged in batch:
            for chunk, digest in zip(staged.prepared.chunks, staged.prepared.hashes, strict=True):
                if digest not in staged.kept:
                    missing.setdefault(digest, chunk)
        fresh = dict(zip(missing, self._embed(list(missing.values())), strict=True))
        outcomes = []
        for staged in batch:
            p = staged.prepared
            vectors = [staged.kept[h] if h in staged.kept else fresh[h] for h in p.hashes]
            try:
                stored = self.store.replace_document(
                    source=p.source,
                    title=p.doc.title,
                    filetype=p.doc.filetype,
                    version=p.version,
                    root=p.root,
                    chunks=p.chunks,
                    vectors=vectors,
                    # Chroma metadata holds no lists: tags are kept as ",a,b," for membership tests.
                    extra={"superseded": p.doc.superseded, "tags": _tags(p.doc.tags)},
                    text_hashes=p.hashes,
                )
            except IngestError as exc:
                outcomes.append(FileOutcome(p.source, "failed", str(exc)))
                continue
            reused = len(p.chunks) - staged.misses
            outcomes.append(
                FileOutcome(
                    p.source, "updated" if p.replaces else "added", chunks=stored.chunks, reused=reused
                )
            )
        return outcomes

    def _embed(self, chunks: list[Chunk]) -> list[Vector]:
        """Vectors for ``chunks``, in order, embedded in model batches of chunks of like length.

        Each call to the model gets one batch, longest chunks first: sentence-transformers sorts a
        call by characters, and a batch is as costly as its longest text in word pieces. On the
        PostgreSQL manual that padded 1.29 tokens per real one; sorting by word pieces, 1.02.
        """
        order = sorted(range(len(chunks)), key=lambda i: chunks[i].tokens, reverse=True)
        size = self.embedder.batch_size
        vectors: list[Vector] = [[] for _ in chunks]
        for at in range(0, len(order), size):
            part = order[at : at + size]
            embedded = self.embedder.embed_documents([chunks[i].embed_text for i in part])
            for i, vector in zip(part, embedded, strict=True):
                vectors[i] = vector
        return vectors

    def ingest_bytes(self, data: bytes, *, source: str, root: str) -> FileOutcome:
        """Index one document given as bytes (an upload) unless its indexed version is this one."""
        try:
            existing: IndexedDocument | None = self.store.find_source(source)
        except UnknownDocument:
            existing = None
        result = self._prepare(data, source=source, root=root, existing=existing)
        return result if isinstance(result, FileOutcome) else self._store_all([self._stage(result)])[0]

    def _prune(
        self, roots: list[Path], seen: set[str], known: Iterable[IndexedDocument]
    ) -> list[FileOutcome]:
        root_names = {str(r) for r in roots}
        pruned = []
        for doc in known:
            if doc.root in root_names and doc.source not in seen:
                self.store.delete_document(doc.document_id)
                pruned.append(FileOutcome(doc.source, "pruned", "file is gone"))
        return pruned
