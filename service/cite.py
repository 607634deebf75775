"""Citation verification: every sentence of an answer is checked against the source it cites.

A language model (often a small, error-prone one) writes an answer with ``[n]`` markers naming the
numbered sources of the prompt. :func:`verify_answer` splits the answer into sentences, checks each
one against the sources it cites and finds the exact supporting quote, so that the service never
shows a citation to a source that does not say what the sentence claims.

Sentences (:func:`split_sentences`)
    Lines are blocks; a line that starts with a lowercase letter continues the previous line when
    that one did not end a sentence (hard-wrapped text). Markdown bullets (``-``, ``*``, ``+``,
    ``•``, ``1.``, ``1)``), headings (``#``) and quotes (``>``) are not part of a sentence, so each
    bullet is (at least) one sentence. Inside a block a sentence ends at ``.``, ``!``, ``?`` or
    ``…`` (plus closing quotes or brackets and any ``[n]`` markers right after them) followed by
    whitespace, unless the next word starts with a lowercase letter or the period ends a known
    abbreviation (``e.g.``, ``Dr.``, ``U.S.``, an initial). A fragment holding nothing but markers
    joins the sentence before it ("... 25 days.\\n[1]").

Markers (:func:`parse_markers`)
    ``[1]``, ``[1][2]``, ``[1, 2]``, ``[1; 2]``, ``[^1]``, ``[Source 1]``, ``[source: 1, 2]`` and
    ranges ``[1-3]`` / ``[1–3]`` (expanded when the range is ascending and spans at most 20
    numbers, otherwise just the two ends). Numbers have at most 9 digits; ``[1234567890]`` is
    text, not a marker; only spaces and tabs may stand inside a marker. A marker right after a
    word (``days[1]``) still counts.

Rules
    1. Numbers naming no given source (``[0]``, ``[7]`` with three sources) are dropped: they never
       become citations, and the text shows the marker without them (``[1, 7]`` becomes ``[1]``,
       ``[7]`` disappears with the space before it).
    2. A cited sentence is checked against each source it cites:

       a. Key terms must occur in the source (its text, title or section). Key terms are numbers
          (``25``, ``30%``, ``$1,500``, ``14:00``, ``2.3.1``, ``2025-01-20``); names, i.e. runs
          of words with a capital letter (``John Smith``, ``HR``, ``PeopleHub``) except the
          sentence's first word, a word right after a colon ("Note: Employees ...") and ``I``;
          and quoted strings (``"..."``, ``“...”``, ``‘...’``, ```...```), whose words are not
          names on their own. A run of names must occur as a run. Matching is on
          casefolded letter/digit tokens, so case, whitespace and punctuation do not matter
          (``1,500`` = ``1500``, ``Wi-Fi`` = ``WiFi``), but a term must match whole tokens (``25``
          is not found in ``250``, ``2025`` or ``25.5``); a trailing ``s`` of a name may be
          missing in the source (``APIs``, ``Doe's``). Number words are not numbers:
          "twenty-five" is no key term, and "25" is not found in a source that says
          "twenty-five".
       b. The sentence (markers stripped) must be semantically close to some passage of the
          source: cosine similarity >= ``similarity_floor`` against the best source sentence or
          window of two adjacent sentences.

       c. The sentence must not itself read as an order to the assistant, and no passage touching
          text that speaks to the assistant (``service.injection.order_spans``: "ignore previous
          instructions", role and chat-template tags, fence-breaking regions) supports anything, nor
          do its key terms count: an injected canary or fake source name has nowhere to stand.
          URLs are key terms too; a word in capitals ("PWNED", "SSO") is a name even first in the
          sentence; and a sentence written in capitals its quote does not use is not verified.

       With several cited sources the key terms may be spread over them (a term must occur in at
       least one cited source, and each cited source must hold at least one of the terms), while
       the similarity check is made against each source on its own. The sentence is verified only
       when every citation it carries is verified: a sentence never keeps a marker to a source
       that fails.
    3. The quote is the best passing passage (among those within 0.08 of the best similarity, the
       one holding the most key terms), or the most similar passage when none passes:
       ``quote == source.text[i:j]``, ``start == source.start + i``, ``end == source.start + j``,
       ``score`` its similarity. A failed check still reports its best quote, with
       ``verified=False`` and a ``reason`` such as ``number 28 not in source 2`` or
       ``similarity 0.41 below 0.55`` (several reasons are joined with ``; ``).
       ``Citation.sentence`` is the sentence as in the answer (``CheckedSentence.text``).
    4. A sentence without (valid) markers needs support when it has a key term or more than
       five words; never when it is a markdown heading or a question; and not when, without any
       key term, it is a lead-in ending with ``:`` or a "the documents do not cover this" style
       sentence ("does not mention", "no information", "I don't know"...). Such a sentence
       is attributed: when some source passes both checks on its own, the most similar one becomes
       a verified citation of the sentence (``cited`` stays empty: no marker is added to the
       text); otherwise the sentence is unverified with a reason. Sentences that need no support
       have ``needs_support=False``, ``verified=False`` and count neither way in
       :attr:`Verification.verified_share`.
    5. :meth:`Verification.text` returns the answer with invalid markers removed; with
       ``strict=True`` it also removes every unverified sentence that needs support (a bullet
       left empty goes with its line; spaces and blank lines are tidied).

All embeddings of one call (claims and candidate passages, deduplicated) come from a single
``embed_sentences`` call (cached per text); nothing is embedded when there is nothing to check.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from service.injection import URL, instruction_reason, order_spans, without_orders
from service.types import Citation, Source

if TYPE_CHECKING:
    from ingest.embed import Embedder

__all__ = [
    "CheckedSentence",
    "Verification",
    "parse_markers",
    "remove_markers",
    "split_sentences",
    "verify_answer",
]

# A sentence of at most this many words, with no key term, is connective and needs no support.
SHORT_WORDS = 5
# Among passages this close to the best similarity, the quote is the one holding the most key terms.
QUOTE_SLACK = 0.08
# A reason names at most this many missing key terms.
MAX_REASONS = 5
# A range marker [a-b] is expanded only when it spans at most this many numbers.
MAX_RANGE = 20

_NUM = r"\d{1,9}"
_ITEM = rf"(?:(?:sources?|src|docs?|documents?|refs?)[ \t]*[:#]?[ \t]*)?{_NUM}(?:[ \t]*[-–][ \t]*{_NUM})?"
_MARKER = re.compile(
    rf"\[\^?[ \t]*({_ITEM}(?:[ \t]*[,;][ \t]*{_ITEM})*)[ \t]*\]",
    re.IGNORECASE,
)
_MARKER_ITEM = re.compile(rf"({_NUM})(?:[ \t]*[-–][ \t]*({_NUM}))?")

_END = re.compile(rf"[.!?…]+[\"'”’)\]]*(?:\s*{_MARKER.pattern})*(?=\s|$)", re.IGNORECASE)
_PREFIX = re.compile(r"[ \t]*(?:(?:[-*+•‣◦▪]|\d{1,3}[.)]|#{1,6}|>+)(?:[ \t]+|$))?")
_HEADING = re.compile(r"[ \t]*#{1,6}[ \t]*")
_ABBREVIATIONS = frozenset(
    {"e.g", "i.e", "vs", "dr", "mr", "mrs", "ms", "st", "jr", "sr", "prof", "fig", "approx", "cf"}
    | {"inc", "ltd", "co", "dept", "ca", "al", "mt", "resp"}
)

_TOKEN = re.compile(r"\d+(?:\.\d+)*|[^\W\d_]+")
_WORD = re.compile(r"[^\W\d_][\w'’\-]*|\d[\w'’.,:\-]*")
_NUMBER = re.compile(r"(?:[$€£¥]\s?)?\d+(?:[.,:/\-–]\d+)*%?")
_NAME_WORD = re.compile(r"[^\W_][\w'’\-]*")
_QUOTED = re.compile(
    r"\"([^\"\n]{1,200})\"|“([^”\n]{1,200})”|‘([^’\n]{1,200})’|`([^`\n]{1,200})`"
    r"|(?<!\w)'([^'\n]{1,200})'(?!\w)"
)
_NOT_NAMES = frozenset({"I", "I'm", "I've", "I'll", "I'd", "OK"})
_NO_INFO = re.compile(
    r"\b(?:do(?:es)?\s*(?:n[o']t|not)|did\s*(?:n[o']t|not)|can(?:no|')t|could\s*(?:n[o']t|not)"
    r"|is\s*(?:n[o']t|not)|are\s*(?:n[o']t|not))\s+(?:\w+\s+)?"
    r"(?:cover|covered|mention|mentioned|say|said|specify|specified|contain|include|state|stated"
    r"|address|addressed|provide|know|find|answer|describe|described)\b"
    r"|\bno\s+(?:information|details?|mention|answer)\b|\bnot\s+(?:enough|sufficient)\s+information\b"
    r"|\bdon[o']?t\s+know\b|\bunable\s+to\s+(?:find|answer)\b",
    re.IGNORECASE,
)
_SPACES = re.compile(r"\s+")


# -- data ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckedSentence:
    """One sentence of the answer and the outcome of its check.

    ``text`` is the sentence exactly as in the answer (markers included), ``start``/``end`` its span
    there; ``display`` is the same sentence with invalid markers removed. ``cited`` holds the valid
    source numbers its markers name. ``needs_support`` is False for connective sentences, headings,
    questions and "not covered" sentences; those are never verified and never removed.
    """

    text: str
    start: int
    end: int
    cited: tuple[int, ...]
    verified: bool
    citations: tuple[Citation, ...]
    needs_support: bool = True
    display: str = ""
    reason: str = ""

    @property
    def flagged(self) -> bool:
        """True when the sentence needs support and has none: the caller marks or removes it."""
        return self.needs_support and not self.verified


@dataclass(frozen=True)
class Verification:
    """Every sentence of an answer, checked; ``citations`` are all of them, in answer order."""

    sentences: list[CheckedSentence]
    citations: list[Citation]
    answer: str = ""

    @property
    def verified_share(self) -> float:
        """Verified sentences among those that need support; 1.0 when none needs support."""
        needing = [s for s in self.sentences if s.needs_support]
        if not needing:
            return 1.0
        return sum(s.verified for s in needing) / len(needing)

    def text(self, *, strict: bool) -> tuple[str, list[str]]:
        """The answer with invalid markers removed, and the sentences removed.

        ``strict=True`` removes every sentence that needs support and is not verified; otherwise
        they stay (the caller marks them). Lines left empty by a removal go; spaces are tidied.
        """
        removed: list[str] = []
        lines: list[list[str]] = [[]]
        touched: list[bool] = [False]

        def emit(piece: str) -> None:
            parts = piece.split("\n")
            lines[-1].append(parts[0])
            for part in parts[1:]:
                lines.append([part])
                touched.append(False)

        pos = 0
        for s in self.sentences:
            emit(self.answer[pos : s.start])
            shown = s.display
            if strict and s.flagged:
                removed.append(shown)
                touched[-1] = True
            else:
                if shown != s.text:
                    touched[-1] = True
                emit(shown)
            pos = s.end
        emit(self.answer[pos:])

        out: list[str] = []
        for parts, changed in zip(lines, touched, strict=True):
            line = "".join(parts)
            tidied = _tidy_line(line) if changed else line
            if tidied is not None:
                out.append(tidied)
        result = re.sub(r"\n[ \t]*\n(?:[ \t]*\n)+", "\n\n", "\n".join(out)).strip()
        return result, removed


def _with_marker(sentence: str, n: int) -> str:
    """An attributed sentence with its ``[n]`` added before the closing punctuation, as models write it."""
    end = re.search(r"[.!?…]+[\"'”’)]*$", sentence)
    if end:
        return f"{sentence[: end.start()]} [{n}]{sentence[end.start() :]}"
    return f"{sentence} [{n}]"


def _tidy_line(line: str) -> str | None:
    """A line a removal touched, with single spaces; None when nothing but a bullet is left."""
    prefix = _PREFIX.match(line)
    head = prefix.group(0) if prefix else ""
    rest = re.sub(r"[ \t]+", " ", line[len(head) :]).strip(" \t")
    rest = re.sub(r" +([.,;:!?])", r"\1", rest)
    if not rest.strip():
        return None
    head = head.rstrip()
    return f"{head} {rest}" if head.strip() else head + rest


# -- sentences and markers -------------------------------------------------------------------------


def parse_markers(sentence: str) -> list[int]:
    """Source numbers the ``[n]`` markers of ``sentence`` name, in order, without repeats.

    ``[1]``, ``[2][3]``, ``[1, 2]``, ``[1;2]``, ``[^1]``, ``[Source 1]`` and ascending ranges
    ``[1-3]`` (at most 20 numbers; a longer or descending range gives its two ends). Numbers are not
    checked against any sources here: ``[0]`` gives 0.
    """
    seen: dict[int, None] = {}
    for match in _MARKER.finditer(sentence):
        for n in _marker_numbers(match.group(1)):
            seen.setdefault(n, None)
    return list(seen)


def _marker_numbers(body: str) -> list[int]:
    numbers: list[int] = []
    for item in _MARKER_ITEM.finditer(body):
        lo = int(item.group(1))
        hi = int(item.group(2)) if item.group(2) else lo
        if lo <= hi and hi - lo < MAX_RANGE:
            numbers.extend(range(lo, hi + 1))
        else:
            numbers.extend([lo, hi])
    return numbers


def _clean_markers(text: str, allowed: set[int]) -> str:
    """``text`` with marker numbers outside ``allowed`` removed, and markers left empty dropped.

    Repeated until nothing changes, so that a removal cannot leave a new marker behind
    (``[[7]1]``), and brackets a removal emptied (``[[7]]``) go too.
    """

    def once(text: str) -> str:
        out: list[str] = []
        pos = 0
        for match in _MARKER.finditer(text):
            numbers = _marker_numbers(match.group(1))
            before = text[pos : match.start()]
            if all(n in allowed for n in numbers):
                new = match.group(0)
            else:
                kept = list(dict.fromkeys(n for n in numbers if n in allowed))
                new = "[" + ", ".join(map(str, kept)) + "]" if kept else ""
                if not new:
                    before = before.rstrip(" \t")  # "days [7]." -> "days."
            out.append(before + new)
            pos = match.end()
        out.append(text[pos:])
        return "".join(out)

    while True:
        new = once(text)
        if new == text:
            return text
        text = re.sub(r"\[[ \t]*\]", "", new)


def _strip_markers(text: str) -> str:
    return _SPACES.sub(" ", _MARKER.sub(" ", text)).strip()


def remove_markers(text: str) -> str:
    """``text`` without its ``[n]`` look-alikes (and the space before each), wording otherwise kept:
    a document's own footnote markers are not an answer's citations."""
    return re.sub(r"[ \t]*" + _MARKER.pattern, "", text, flags=re.IGNORECASE)


def _line_spans(text: str) -> Iterator[tuple[int, int]]:
    pos = 0
    for line in text.split("\n"):
        yield pos, pos + len(line)
        pos += len(line) + 1


def _blocks(text: str) -> list[tuple[int, int]]:
    """Spans of sentence-bearing text: lines without bullets, hard-wrapped lines joined."""
    blocks: list[tuple[int, int]] = []
    last_line = 0  # where the content of the block's last line starts
    for ls, le in _line_spans(text):
        prefix = _PREFIX.match(text, ls, le)
        cs = prefix.end() if prefix else ls
        while cs < le and text[cs].isspace():
            cs += 1
        ce = le
        while ce > cs and text[ce - 1].isspace():
            ce -= 1
        if cs >= ce:
            blocks.append((-1, -1))  # a blank line ends a block
            continue
        has_bullet = prefix is not None and prefix.group(0).strip() != ""
        if blocks and blocks[-1][0] >= 0 and not has_bullet and text[cs].islower():
            prev_s, prev_e = blocks[-1]
            tail = _strip_markers(text[last_line:prev_e])
            if tail and tail[-1] not in ".!?…:":
                blocks[-1] = (prev_s, ce)
                last_line = cs
                continue
        blocks.append((cs, ce))
        last_line = cs
    return [b for b in blocks if b[0] >= 0]


def _is_abbreviation(text: str, block_start: int, dot: int, after: int) -> bool:
    """Whether the period at ``dot`` ends an abbreviation rather than a sentence."""
    m = re.search(r"(\S+)$", text[max(block_start, dot - 64) : dot])
    if not m:
        return False
    word = m.group(1).lstrip("([\"'“‘")
    low = word.lower()
    if low in _ABBREVIATIONS or re.fullmatch(r"(?:[a-z]\.)+[a-z]", low):
        return True
    if len(word) == 1 and word.isalpha() and word.isupper():
        return True  # an initial: "J. Smith"
    return low == "no" and after < len(text) and text[after].isdigit()


def split_sentences(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` spans of the sentences of ``text``, in order, trimmed of whitespace.

    Bullet, heading and quote prefixes are outside the spans; see the module docstring.
    """
    spans: list[tuple[int, int]] = []
    for bs, be in _blocks(text):
        start = bs
        for m in _END.finditer(text, bs, be):
            after = m.end()
            while after < be and text[after].isspace():
                after += 1
            if after >= be:
                continue  # the block's end closes the sentence anyway
            if text[after].islower():
                continue
            single_dot = text[m.start()] == "." and m.group(0).rstrip("\"'”’)]").count(".") == 1
            if single_dot and _is_abbreviation(text, bs, m.start(), after):
                continue
            spans.append((start, m.end()))
            start = after
        spans.append((start, be))

    out: list[tuple[int, int]] = []
    for s, e in spans:
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if s >= e:
            continue
        piece = text[s:e]
        if not any(c.isalnum() for c in _MARKER.sub("", piece)):
            if not _MARKER.search(piece):
                continue  # punctuation or symbols only: not a sentence
            if out:
                out[-1] = (out[-1][0], e)  # markers only: they belong to the sentence before
                continue
        out.append((s, e))
    return out


# -- key terms -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Term:
    kind: str  # "number", "name" or "quote"
    shown: str  # as written in the sentence
    key: str  # its tokens, joined

    def describe(self) -> str:
        return f"{self.kind} {self.shown}" if self.kind == "number" else f"{self.kind} {self.shown!r}"


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(unicodedata.normalize("NFKC", text).casefold())


def _key_terms(claim: str) -> list[_Term]:
    """Numbers, capitalised names (not the first word) and quoted strings of a marker-free claim."""
    terms: list[_Term] = []
    seen: set[str] = set()

    def add(kind: str, shown: str) -> None:
        key = "".join(_tokens(shown))
        if key and key not in seen:
            seen.add(key)
            terms.append(_Term(kind, shown, key))

    for m in URL.finditer(claim):
        add("url", m.group(0).rstrip(".,;:!?"))
    quoted: list[tuple[int, int]] = []
    for m in _QUOTED.finditer(claim):
        quoted.append(m.span())
        add("quote", next(g for g in m.groups() if g is not None).strip())
    for m in _NUMBER.finditer(claim):
        add("number", m.group(0).strip())

    group: list[str] = []

    def flush() -> None:
        if group:
            add("name", " ".join(group))
            group.clear()

    prev_end = 0
    q = 0  # quoted[q] is the first quoted span that does not end before the word
    for i, w in enumerate(_NAME_WORD.finditer(claim)):
        while q < len(quoted) and quoted[q][1] <= w.start():
            q += 1
        word = w.group(0).rstrip("-'’")
        lead = claim[prev_end : w.start()]
        prev_end = w.end()
        possessive = re.search(r"['’]s$", word) is not None
        if possessive:
            word = word[:-2]
        is_name = (
            (i > 0 or _is_acronym(word))
            and not re.search(r":\s*$", lead)  # "Note: Employees ..." starts a clause
            and not (q < len(quoted) and quoted[q][0] <= w.start())  # inside a quote: one term already
            and word not in _NOT_NAMES
            and any(c.isupper() for c in word)
            and not word[0].isdigit()
        )
        if not is_name:
            flush()
            continue
        if group and lead != " ":
            flush()
        group.append(word)
        if possessive:
            flush()
    flush()
    return terms


def _is_acronym(word: str) -> bool:
    """A word in capitals ("PWNED", "SSO") is a term wherever it stands, even first in the sentence."""
    return len(word) >= 3 and word.isalpha() and word.isupper()


def _shouts(text: str) -> bool:
    """Mostly capital letters: an answer written in capitals its source does not use is not a quote."""
    letters = [c for c in text if c.isalpha()]
    return len(letters) >= 12 and sum(c.isupper() for c in letters) >= 0.8 * len(letters)


class _Haystack:
    """Casefolded tokens of a text, for whole-token, punctuation-blind term lookups."""

    def __init__(self, text: str) -> None:
        tokens = _tokens(text)
        self.joined = "".join(tokens)
        self.starts: set[int] = set()
        self.ends: set[int] = set()
        pos = 0
        for token in tokens:
            self.starts.add(pos)
            pos += len(token)
            self.ends.add(pos)

    def _find(self, key: str) -> bool:
        pos = self.joined.find(key)
        while pos >= 0:
            if pos in self.starts and pos + len(key) in self.ends:
                return True
            pos = self.joined.find(key, pos + 1)
        return False

    def contains(self, term: _Term) -> bool:
        if self._find(term.key):
            return True
        plural = term.kind == "name" and len(term.key) > 3 and term.key.endswith("s")
        return plural and self._find(term.key[:-1])


# -- checking --------------------------------------------------------------------------------------


@dataclass
class _Claim:
    span: tuple[int, int]
    raw: str
    display: str
    claim: str
    cited: tuple[int, ...]
    terms: list[_Term]
    needs_support: bool
    order: str | None = None  # why the sentence reads as an order to the assistant


@dataclass
class _Outcome:
    n: int
    verified: bool
    reasons: list[str]
    quote: tuple[int, int]
    score: float


@dataclass
class _SourceInfo:
    source: Source
    passages: list[tuple[int, int]]
    haystack: _Haystack

    @cached_property
    def passage_hays(self) -> list[_Haystack]:
        return [_Haystack(self.source.text[i:j]) for i, j in self.passages]

    @cached_property
    def heading_hay(self) -> _Haystack:
        return _Haystack(f"{self.source.title}\n{self.source.section}")

    @cached_property
    def blocked(self) -> np.ndarray:
        """Passages touching text that speaks to the assistant (``order_spans``): they support nothing."""
        spans = order_spans(self.source.text)
        return np.asarray(
            [any(s < j and i < e for s, e in spans) for i, j in self.passages], dtype=bool
        ).reshape(len(self.passages))


def _sentences(text: str) -> list[tuple[int, int]]:
    return [(s, e) for s, e in split_sentences(text) if any(c.isalnum() for c in text[s:e])]


def _passages(text: str) -> list[tuple[int, int]]:
    """Candidate quotes of a source: its sentences and windows of two adjacent sentences."""
    sentences = _sentences(text)
    windows = [(a[0], b[1]) for a, b in itertools.pairwise(sentences)]
    return sentences + windows


def _needs_support(claim: str, terms: list[_Term], cited: tuple[int, ...], heading: bool) -> bool:
    if not any(c.isalnum() for c in claim):
        return False
    if cited:
        return True
    if heading or claim.rstrip("*_ ").endswith("?"):
        return False
    if terms:
        return True
    if claim.rstrip("*_ ").endswith(":"):
        return False
    if _NO_INFO.search(claim):
        return False
    return len(_WORD.findall(claim)) > SHORT_WORDS


def _check(
    claim: _Claim,
    info: _SourceInfo,
    sims: np.ndarray,
    others: Sequence[_SourceInfo],
    floor: float,
) -> _Outcome:
    """Claim against one source; ``others`` are the other sources the sentence cites."""
    n = info.source.n
    reasons: list[str] = []
    if claim.order:
        reasons.append(f"reads as an order to the assistant ({claim.order})")
    # A key term must stand in a passage that supports the claim (or in the source's title or
    # section), not anywhere in the source: a number from an unrelated table row proves nothing.
    # A two-sentence window counts only where it matches better than either of its sentences.
    n_sentences = (len(info.passages) + 1) // 2
    supporting = [
        info.passage_hays[k]
        for k, v in enumerate(sims)
        if v >= floor and (k < n_sentences or v > max(sims[k - n_sentences], sims[k - n_sentences + 1]))
    ] or [info.haystack]

    def near(term: Any) -> bool:
        return info.heading_hay.contains(term) or any(hay.contains(term) for hay in supporting)

    present = [t for t in claim.terms if near(t)]
    found = set(present)
    missing = [t for t in claim.terms if t not in found and not any(o.haystack.contains(t) for o in others)]
    reasons.extend(f"{t.describe()} not in source {n}" for t in missing[:MAX_REASONS])
    if len(missing) > MAX_REASONS:
        reasons.append(f"{len(missing) - MAX_REASONS} more key terms not in source {n}")
    if others and claim.terms and not present:
        reasons.append(f"none of the key terms in source {n}")

    if not info.passages:
        reasons.append(f"source {n} has no text")
        return _Outcome(n, False, reasons, (0, 0), 0.0)

    best = float(sims.max())
    eligible = [k for k, v in enumerate(sims) if v >= best - QUOTE_SLACK and (v >= floor or best < floor)]
    if claim.terms and len(eligible) > 1:
        hays = info.passage_hays
        k = max(eligible, key=lambda k: (sum(hays[k].contains(t) for t in claim.terms), float(sims[k])))
    else:
        k = max(eligible, key=lambda k: float(sims[k]))
    score = float(sims[k])
    if score < floor:
        reasons.append(f"similarity {score:.2f} below {floor:.2f}")
    i, j = info.passages[k]
    if _shouts(claim.claim) and not _shouts(info.source.text[i:j]):
        reasons.append(f"written in capitals source {n} does not use")
    return _Outcome(n, not reasons, reasons, info.passages[k], score)


def _citation(claim: _Claim, info: _SourceInfo, outcome: _Outcome) -> Citation:
    src = info.source
    i, j = outcome.quote
    return Citation(
        n=src.n,
        sentence=claim.raw,
        source=src.source,
        title=src.title,
        section=src.section,
        page=src.page,
        quote=src.text[i:j],
        start=src.start + i,
        end=src.start + j,
        score=round(outcome.score, 4),
        verified=outcome.verified,
        reason="; ".join(outcome.reasons),
    )


def verify_answer(
    answer: str,
    sources: Sequence[Source],
    *,
    embedder: Embedder,
    similarity_floor: float = 0.55,
) -> Verification:
    """Check every sentence of ``answer`` against the sources it cites (see the module docstring)."""
    by_n: dict[int, Source] = {}
    for src in sources:
        by_n.setdefault(src.n, src)
    valid = set(by_n)

    claims: list[_Claim] = []
    for s, e in split_sentences(answer):
        raw = answer[s:e]
        cited = tuple(n for n in parse_markers(raw) if n in valid)
        claim = _strip_markers(raw)
        terms = _key_terms(claim)
        lead = answer[max(0, s - 64) : s]
        line = lead[lead.rfind("\n") + 1 :] if "\n" in lead or s <= 64 else ""
        heading = "#" in line and _HEADING.fullmatch(line) is not None
        display = _clean_markers(raw, set(cited)).strip()
        order = instruction_reason(claim)
        needs = _needs_support(claim, terms, cited, heading) or order is not None
        claims.append(_Claim((s, e), raw, display, claim, cited, terms, needs, order))

    # Which sources are needed: the cited ones, and all of them when a sentence needs attribution.
    needed: dict[int, None] = {}
    for c in claims:
        if not c.needs_support:
            continue
        for n in c.cited or by_n:
            needed.setdefault(n, None)
    infos: dict[int, _SourceInfo] = {}
    for n in needed:
        src = by_n[n]
        # Key terms never come from a sentence that orders the assistant about: an injected canary or
        # fake source name has nowhere to stand.
        hay = _Haystack(f"{without_orders(src.text)}\n{src.title}\n{src.section}")
        infos[n] = _SourceInfo(src, _passages(src.text), hay)

    # One embedding call for every claim and candidate passage, deduplicated.
    texts: dict[str, int] = {}
    for c in claims:
        if c.needs_support:
            texts.setdefault(c.claim, len(texts))
    for info in infos.values():
        for i, j in info.passages:
            texts.setdefault(_SPACES.sub(" ", info.source.text[i:j]).strip(), len(texts))
    matrix = np.zeros((0, 0), dtype=np.float32)
    if texts and infos:
        matrix = np.asarray(embedder.embed_sentences(list(texts)), dtype=np.float32)
    passage_rows: dict[int, np.ndarray] = {
        n: np.asarray(
            [texts[_SPACES.sub(" ", info.source.text[i:j]).strip()] for i, j in info.passages], dtype=np.int64
        )
        for n, info in infos.items()
    }

    checked: list[CheckedSentence] = []
    all_citations: list[Citation] = []
    for c in claims:
        citations: list[Citation] = []
        display = c.display
        reason = ""
        verified = False
        if c.needs_support and infos:
            vec = matrix[texts[c.claim]]

            def sims_for(n: int, vec: np.ndarray = vec) -> np.ndarray:
                rows = passage_rows[n]
                if not len(rows):
                    return np.zeros(0, dtype=np.float32)
                return np.where(infos[n].blocked, np.float32(-1.0), matrix[rows] @ vec)

            if c.cited:
                outcomes = []
                for n in c.cited:
                    others = [infos[m] for m in c.cited if m != n]
                    outcome = _check(c, infos[n], sims_for(n), others, similarity_floor)
                    outcomes.append(outcome)
                    citations.append(_citation(c, infos[n], outcome))
                verified = all(o.verified for o in outcomes)
                reason = "; ".join(r for o in outcomes for r in o.reasons)
            else:
                outcomes = [_check(c, infos[n], sims_for(n), (), similarity_floor) for n in infos]
                passing = [o for o in outcomes if o.verified]
                if passing:
                    best = max(passing, key=lambda o: o.score)
                    citations.append(_citation(c, infos[best.n], best))
                    verified = True
                    display = _with_marker(display, best.n)
                elif outcomes:
                    closest = max(outcomes, key=lambda o: o.score)
                    why = "; ".join(closest.reasons)
                    reason = f"no source supports it (closest: source {closest.n}, {why})"
        elif c.needs_support:
            reason = "no sources to check against"
        else:
            reason = "needs no support"
        checked.append(
            CheckedSentence(
                text=c.raw,
                start=c.span[0],
                end=c.span[1],
                cited=c.cited,
                verified=verified,
                citations=tuple(citations),
                needs_support=c.needs_support,
                display=display,
                reason=reason,
            )
        )
        all_citations.extend(citations)
    return Verification(sentences=checked, citations=all_citations, answer=answer)
