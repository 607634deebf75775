"""Split a document into chunks: by its own headings first, then by size in the embedder's tokens.

Size is counted in the embedding model's word pieces, not characters, because the model silently drops
whatever lies past its limit (256 for all-MiniLM-L6-v2). The title and heading trail are embedded
with each chunk and count toward that limit, so each section gets the budget its prefix leaves.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from langchain_text_splitters import RecursiveCharacterTextSplitter

from ingest.types import Chunk, LoadedDocument

# [CLS] and [SEP] (or the model's equivalents) wrap every embedded text.
SPECIAL_TOKENS = 2
SEPARATORS = ["\n\n", "\n", ". ", "; ", ", ", " ", ""]


@dataclass(frozen=True)
class Section:
    start: int
    end: int
    trail: tuple[str, ...]


@dataclass(frozen=True)
class TokenBudget:
    """How chunks are sized, in word pieces.

    :param count: counts word pieces of a text (special tokens excluded).
    :param max_tokens: the most one embedded text may hold, special tokens included.
    :param overlap: word pieces shared by neighbouring chunks of one section.
    :param max_prefix: the most the title and heading trail may take.
    :param reserved: word pieces taken by a fixed document prefix (such as ``passage: ``).
    """

    count: Callable[[str], int]
    max_tokens: int
    overlap: int = 32
    max_prefix: int = 64
    reserved: int = 0


def sections_of(doc: LoadedDocument) -> list[Section]:
    """Spans of text between headings, each with the trail of headings above it."""
    sections: list[Section] = []
    stack: list[tuple[int, str]] = []
    cursor = 0
    trail: tuple[str, ...] = ()
    for heading in sorted(doc.headings, key=lambda h: h.start):
        if heading.start > cursor:
            sections.append(Section(cursor, heading.start, trail))
        while stack and stack[-1][0] >= heading.level:
            stack.pop()
        stack.append((heading.level, heading.text))
        trail = tuple(text for _, text in stack)
        cursor = max(cursor, heading.end)
    sections.append(Section(cursor, len(doc.text), trail))
    return sections


def section_path(title: str, trail: tuple[str, ...]) -> tuple[str, ...]:
    """The heading trail without a first heading that only repeats the document title."""
    if trail and _normal(trail[0]) == _normal(title):
        return trail[1:]
    return trail


def _normal(text: str) -> str:
    # str.split() also splits on the no-break spaces that generated HTML puts in numbered titles.
    return " ".join(text.split()).lower()


def embed_prefix(title: str, path: tuple[str, ...]) -> str:
    """The subject line embedded before a chunk: title, then the section path."""
    return f"{title}\n{' > '.join(path)}" if path else title


def _fit_prefix(prefix: str, budget: TokenBudget) -> str:
    # At most half of what a chunk may hold, so a small max_tokens still leaves room for the text.
    limit = min(budget.max_prefix, (budget.max_tokens - SPECIAL_TOKENS - budget.reserved) // 2)
    if budget.count(prefix) <= limit:
        return prefix
    words = prefix.split(" ")
    while words and budget.count(" ".join(words)) > limit:
        words = words[: max(1, len(words) * 3 // 4)] if len(words) > 1 else []
    return " ".join(words)


def split_document(doc: LoadedDocument, budget: TokenBudget) -> list[Chunk]:
    """Chunks of ``doc`` in reading order; each ``embed_text`` fits ``budget.max_tokens``.

    ``chunk.text == doc.text[chunk.start:chunk.end]`` for every chunk.
    """
    chunks: list[Chunk] = []
    for section in sections_of(doc):
        body = doc.text[section.start : section.end]
        if not body.strip():
            continue
        path = section_path(doc.title, section.trail)
        prefix = _fit_prefix(embed_prefix(doc.title, path), budget)
        prefix_tokens = budget.count(prefix) if prefix else 0
        room = budget.max_tokens - SPECIAL_TOKENS - budget.reserved - prefix_tokens
        for start, piece in _split_to_fit(body, room, budget):
            begin = section.start + start
            tokens = prefix_tokens + budget.count(piece) + SPECIAL_TOKENS + budget.reserved
            chunks.append(
                Chunk(
                    text=piece,
                    embed_text=f"{prefix}\n\n{piece}" if prefix else piece,
                    position=len(chunks),
                    start=begin,
                    end=begin + len(piece),
                    section=path,
                    page=doc.page_at(begin),
                    page_end=doc.page_at(begin + len(piece) - 1),
                    tokens=tokens,
                )
            )
    return chunks


def _split_to_fit(text: str, room: int, budget: TokenBudget) -> list[tuple[int, str]]:
    """``(offset, piece)`` pairs covering ``text``, each piece at most ``room`` word pieces.

    LangChain's recursive splitter cuts the text into contiguous pieces (no overlap), so each piece
    starts exactly where the previous one ended, past the whitespace the splitter stripped: offsets
    are exact even where the text repeats itself, which searching for the piece would get wrong.
    Overlap is then added by starting each piece earlier, on a word boundary inside the previous
    one, by at most ``budget.overlap`` word pieces.
    """
    room = max(room, 8)
    overlap = min(budget.overlap, room // 4)
    out: list[tuple[int, str]] = []
    prev: tuple[int, int] | None = None
    for start, end in _contiguous_pieces(text, room - overlap, budget):
        if prev is not None and overlap:
            begin = _tail_start(text, prev[0], prev[1], overlap, budget.count)
            if begin < prev[1] and budget.count(text[begin:end]) <= room:
                start = begin
        out.append((start, text[start:end]))
        prev = (start if prev is None else max(start, prev[1]), end)
    return out


def _contiguous_pieces(text: str, room: int, budget: TokenBudget) -> list[tuple[int, int]]:
    splitter = RecursiveCharacterTextSplitter(
        separators=SEPARATORS,
        chunk_size=max(room, 4),
        chunk_overlap=0,
        length_function=budget.count,
        keep_separator="end",
        strip_whitespace=True,
    )
    spans: list[tuple[int, int]] = []
    cursor = 0
    last = -1  # where the previous piece starts
    for piece in splitter.split_text(text):
        # Pieces start where the last ended, after the whitespace the splitter stripped; a piece
        # the splitter could not cut further comes back unstripped, so both are tried.
        skip = len(text[cursor:]) - len(text[cursor:].lstrip())
        at = next((p for p in (cursor + skip, cursor) if text.startswith(piece, p)), -1)
        if at < 0:
            # Characters that count no tokens (control or zero-width ones) are carried over into
            # the next piece as well, so that piece starts inside the previous one.
            earlier = range(cursor - 1, max(last, cursor - len(piece)), -1)
            at = next((p for p in earlier if text.startswith(piece, p)), -1)
        if at < 0:  # the splitter never rewrites or skips text
            raise AssertionError(f"chunk text not at offset {cursor}: {piece[:60]!r}")
        last, cursor = at, max(cursor, at + len(piece))
        start = at + len(piece) - len(piece.lstrip())
        end = at + len(piece.rstrip())
        if start >= end:
            continue
        if budget.count(text[start:end]) > room and end - start > 1:
            spans.extend(
                (start + a, start + b) for a, b in _contiguous_pieces(text[start:end], room * 4 // 5, budget)
            )
        else:
            spans.append((start, end))
    return spans


def _tail_start(text: str, start: int, end: int, limit: int, count: Callable[[str], int]) -> int:
    """The earliest word start in ``text[start:end]`` whose tail up to ``end`` fits ``limit`` tokens."""
    words = [start + m.start() for m in re.finditer(r"\S+", text[start:end])][1:]
    lo, hi, best = 0, len(words) - 1, end
    while lo <= hi:  # tails shrink as the start moves right: binary search the first that fits
        mid = (lo + hi) // 2
        if count(text[words[mid] : end]) <= limit:
            best, hi = words[mid], mid - 1
        else:
            lo = mid + 1
    return best
