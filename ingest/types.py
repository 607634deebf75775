"""The data that flows through ingest: a loaded document, its chunks, and what a run reports."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class Heading:
    """A heading of a document: where its line starts and ends in the text, its level (1 = top)."""

    start: int
    end: int
    level: int
    text: str


@dataclass(frozen=True)
class PageSpan:
    """Characters ``[start, end)`` of the document text come from physical page ``page`` (from 1)."""

    start: int
    end: int
    page: int


@dataclass
class LoadedDocument:
    """A file turned into plain text, with the structure the splitter needs.

    ``text`` is the document's own text: every chunk's offsets point into it.
    """

    text: str
    title: str
    filetype: str
    headings: list[Heading] = field(default_factory=list)
    pages: list[PageSpan] = field(default_factory=list)
    superseded: bool = False
    tags: tuple[str, ...] = ()

    def page_at(self, offset: int) -> int | None:
        """The physical page holding character ``offset``, or ``None`` for formats without pages."""
        for span in self.pages:
            if span.start <= offset < span.end:
                return span.page
        return self.pages[-1].page if self.pages and offset >= self.pages[-1].end else None


@dataclass(frozen=True)
class Chunk:
    """A piece of a document small enough for the embedding model, with where it came from.

    ``text`` is exactly ``document.text[start:end]``; ``embed_text`` adds the title and heading trail
    so the vector knows the chunk's subject even when the chunk itself never names it.
    """

    text: str
    embed_text: str
    position: int
    start: int
    end: int
    section: tuple[str, ...]
    page: int | None
    page_end: int | None
    tokens: int


def document_id(source: str) -> str:
    """A stable id for a document, derived from its source path alone."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:24]


@dataclass(frozen=True)
class IndexedDocument:
    """A document as the store records it."""

    document_id: str
    source: str
    title: str
    filetype: str
    version: str
    chunks: int
    root: str
    indexed_at: str


Outcome = Literal["added", "updated", "unchanged", "skipped", "failed", "pruned"]


@dataclass(frozen=True)
class FileOutcome:
    """What happened to one file in a run, with the reason for a skip or a failure.

    ``reused`` of an added or updated file's ``chunks`` kept the vector of an identical chunk of the
    version it replaced; the others were embedded.
    """

    source: str
    outcome: Outcome
    reason: str = ""
    chunks: int = 0
    reused: int = 0


@dataclass
class IngestReport:
    """The summary of one ingest run: ``embedded_chunks`` went through the model, ``reused_chunks``
    kept the vector they already had."""

    collection: str
    files: list[FileOutcome] = field(default_factory=list)
    repaired: int = 0
    embedded_chunks: int = 0
    reused_chunks: int = 0

    def count(self, outcome: Outcome) -> int:
        return sum(1 for f in self.files if f.outcome == outcome)

    def of(self, outcome: Outcome) -> list[FileOutcome]:
        return [f for f in self.files if f.outcome == outcome]

    @property
    def ok(self) -> bool:
        return self.count("failed") == 0
