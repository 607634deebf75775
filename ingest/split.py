"""Split a document into chunks: by its own headings first, then by size in the embedder's tokens.

Size is counted in the embedding model's word pieces, not characters, because the model silently drops
whatever lies past its limit (256 for all-MiniLM-L6-v2). The title and heading trail are embedded
with each chunk and count toward that limit, so each section gets the budget its prefix leaves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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
    if trail and trail[0].strip().lower() == title.strip().lower():
        return trail[1:]
    return trail


def embed_prefix(title: str, path: tuple[str, ...]) -> str:
    """The subject line embedded before a chunk: title, then the section path."""
    return f"{title}\n{' > '.join(path)}" if path else title


def _fit_prefix(prefix: str, budget: TokenBudget) -> str:
    if budget.count(prefix) <= budget.max_prefix:
        return prefix
    words = prefix.split(" ")
    while words and budget.count(" ".join(words)) > budget.max_prefix:
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

    The recursive split of LangChain's ``RecursiveCharacterTextSplitter`` (same separators, kept at
    the end of each split, same merge and overlap, whitespace stripped), done on offsets: searching
    the text for a piece finds the wrong copy when the text repeats itself. The merge adds up the
    sizes of the splits, which can differ from the size of the merged text when a word is cut; any
    piece still over is split again, tighter.
    """
    room = max(room, 8)
    overlap = min(budget.overlap, room // 4)
    out: list[tuple[int, str]] = []
    for start, end in _split_spans(text, 0, len(text), SEPARATORS, room, overlap, budget.count):
        piece = text[start:end]
        if budget.count(piece) > room and len(piece) > 1:
            out.extend((start + o, p) for o, p in _split_to_fit(piece, room * 4 // 5, budget))
        else:
            out.append((start, piece))
    return out


Span = tuple[int, int]


def _split_spans(
    text: str,
    start: int,
    end: int,
    separators: list[str],
    size: int,
    overlap: int,
    count: Callable[[str], int],
) -> list[Span]:
    """Spans of ``text[start:end]``: split on the first separator present, merge small splits up
    to ``size``, split big ones again on the separators after it."""
    separator, rest = separators[-1], []
    for i, candidate in enumerate(separators):
        if not candidate or candidate in text[start:end]:
            separator, rest = candidate, (separators[i + 1 :] if candidate else [])
            break
    if separator:
        splits: list[Span] = []
        cursor = start
        while (found := text.find(separator, cursor, end)) >= 0:
            splits.append((cursor, found + len(separator)))
            cursor = found + len(separator)
        if cursor < end:
            splits.append((cursor, end))
    else:
        splits = [(i, i + 1) for i in range(start, end)]

    out: list[Span] = []
    good: list[tuple[Span, int]] = []
    for a, b in splits:
        size_ab = count(text[a:b])
        if size_ab < size:
            good.append(((a, b), size_ab))
            continue
        out.extend(_merge_spans(text, good, size, overlap))
        good = []
        out.extend(_split_spans(text, a, b, rest, size, overlap, count) if rest else [(a, b)])
    out.extend(_merge_spans(text, good, size, overlap))
    return out


def _merge_spans(text: str, splits: list[tuple[Span, int]], size: int, overlap: int) -> list[Span]:
    """Neighbouring splits joined while their sizes add up to ``size`` at most; each new span
    repeats the last splits of the one before, up to ``overlap``."""
    out: list[Span] = []
    current: list[tuple[Span, int]] = []
    total = 0

    def emit() -> None:
        a, b = current[0][0][0], current[-1][0][1]
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        if a < b:
            out.append((a, b))

    for split, n in splits:
        if total + n > size and current:
            emit()
            while current and (total > overlap or total + n > size):
                total -= current[0][1]
                current = current[1:]
        current.append((split, n))
        total += n
    if current:
        emit()
    return out
