"""The extractive generator: no language model, it quotes the source sentences closest to the question.

It is the fallback when a model fails and the choice for deployments that must never paraphrase:
every answer sentence is a source sentence, word for word, with its ``[n]`` marker. It never quotes a
sentence that reads as an order to the assistant (``service.injection``), and a document's own
``[n]`` look-alikes are dropped from what it quotes: they are not this answer's citations.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from ingest.embed import Embedder
from service.cite import remove_markers
from service.injection import looks_like_instruction, without_orders
from service.prompt import NOT_COVERED
from service.types import Generation, Prompt

MAX_SENTENCES = 3
MAX_PER_SOURCE = 2
# Sentences scoring within this of the best one are worth quoting too; beyond it they are padding.
MARGIN = 0.08
# Added in proportion to the share of the question's content words a sentence contains: embeddings
# of short sentences blur exact terms (numbers, names) that the question asks about.
WORD_BONUS = 0.1
# Sentences of a superseded document lose this much, so the current version wins unless the old one
# is the only one that answers.
SUPERSEDED_PENALTY = 0.15
# A table row with no figure in it is usually the header: it repeats the question's words and
# answers nothing.
HEADER_ROW_PENALTY = 0.1
# In a follow-up (a prompt with context), similarity to the question itself counts this much and
# similarity to the whole conversation the rest: the earlier turns say what it is about, the question
# what to quote. Ranked by the whole conversation alone, the sentence that answered the earlier
# question (which shares most of its words) would win again.
FOLLOW_UP_WEIGHT = 0.75
# No model window to fill: the number of sources is bounded by retrieval's top_k instead.
CONTEXT_TOKENS = 32768

_BULLET = re.compile(r"^(?:[-*+•▪◦‣·]|\d{1,3}[.)])\s+")
_HEADING = re.compile(r"^#{1,6}\s")
_RULE = re.compile(r"^[\s|:+=_*-]*$")  # table separators, horizontal rules, blank-ish lines
_SENTENCE_END = re.compile(r"[.!?]+[\"'”’)\]]*\s+(?=[\"'“‘(\[]?[A-Z0-9])")
# fmt: off
_ABBREVIATIONS = frozenset([
    "e.g", "i.e", "etc", "mr", "mrs", "ms", "dr", "prof", "no", "nr", "vs", "approx", "inc", "ltd", "co",
    "st", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "fig",
])
_WORD = re.compile(r"\w+")
_STOPWORDS = frozenset([
    "a", "an", "the", "is", "are", "was", "were", "be", "been", "being", "do", "does", "did", "doing",
    "what", "which", "who", "whom", "whose", "when", "where", "why", "how", "i", "me", "my", "we", "our",
    "us", "you", "your", "he", "she", "they", "them", "their", "it", "its", "of", "to", "in", "on", "for",
    "with", "at", "by", "from", "and", "or", "not", "no", "can", "could", "should", "would", "will",
    "shall", "may", "might", "must", "have", "has", "had", "there", "here", "this", "that", "these",
    "those", "as", "if", "any", "all", "about", "into", "than", "then", "so", "get", "gets", "got",
    "many", "much", "some", "such", "also", "please", "tell",
])
# fmt: on


def split_sentences(text: str) -> list[str]:
    """The sentences of a passage, in order, whitespace collapsed, wording untouched.

    Blank lines end paragraphs; bullet and table lines are sentences of their own (bullet marks
    dropped); a line without end punctuation followed by one starting in lower case is a wrapped
    line (PDF text) and is joined. Headings, code fences and table rules are skipped.
    """
    sentences: list[str] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            sentences.extend(_split_prose(" ".join(run)))
            run.clear()

    for block in re.split(r"\n\s*\n", text):
        for raw in block.split("\n"):
            line = raw.strip()
            if not line or _RULE.match(line) or _HEADING.match(line) or line.startswith("```"):
                flush()
                continue
            if "|" in line:  # a table row: markdown (| a | b |) or DOCX (a | b)
                flush()
                sentences.append(" ".join(line.strip("|").split()))
                continue
            bullet = _BULLET.match(line)
            if bullet:
                flush()
                run.append(line[bullet.end() :])
                continue
            if run and not _continues(run[-1], line):
                flush()
            run.append(line)
        flush()
    return [s for s in sentences if len(_WORD.findall(s)) >= 2]


def _continues(previous: str, line: str) -> bool:
    return previous[-1] not in ".!?:;" and (line[0].islower() or line[0].isdigit() or line[0] in "(&")


def _split_prose(text: str) -> list[str]:
    text = " ".join(text.split())
    pieces: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        words = text[start : match.start()].split()
        last = words[-1].lower().rstrip(".") if words else ""
        if last in _ABBREVIATIONS or (len(last) == 1 and last.isalpha()):  # "e.g. X", initials "J. Smith"
            continue
        pieces.append(text[start : match.end()].strip())
        start = match.end()
    pieces.append(text[start:].strip())
    return [p for p in pieces if p]


def content_words(text: str) -> set[str]:
    """Lower-cased words that carry meaning, crudely singularised so "days" meets "day"."""
    words = set()
    for word in _WORD.findall(text.lower()):
        if word in _STOPWORDS or (len(word) < 2 and not word.isdigit()):
            continue
        words.add(word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word)
    return words


def cite(sentence: str, markers: list[int]) -> str:
    """``sentence`` with its markers before the final full stop, as the prompt asks models to write."""
    tags = "".join(f"[{n}]" for n in markers)
    end = re.search(r"[.!?]+$", sentence)
    if end:
        return f"{sentence[: end.start()]} {tags}{end.group()}"
    return f"{sentence.rstrip(':;, ')} {tags}."


@dataclass
class _Candidate:
    text: str
    sources: list[int]
    position: int
    superseded: bool = False
    score: float = 0.0


class ExtractiveGenerator:
    """Quotes the 1-3 source sentences most similar to the question, each with its ``[n]``.

    Example::

        generator = ExtractiveGenerator(embedder)
        generator.generate(prompt, max_tokens=256).text
        # 'Employees receive 25 days of paid vacation per calendar year [2].'
    """

    name = "extractive"
    model = "extractive"
    context_tokens = CONTEXT_TOKENS
    # It can only quote: with no sources it has nothing to say (the evaluation skips closed-book rungs).
    needs_sources = True

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    def answer_sentences(self, prompt: Prompt, *, max_tokens: int = 4096) -> list[str]:
        """The cited sentences of the answer, best first; ``[NOT_COVERED]`` when nothing fits.

        ``max_tokens`` (counted in words) stops further sentences, never the first one.
        """
        candidates = self._candidates(prompt)
        if not candidates:
            return [NOT_COVERED]
        vectors = self.embedder.embed_sentences([c.text for c in candidates])
        query = self.embedder.embed_query(prompt.question)
        if prompt.context:
            whole = self.embedder.embed_query(f"{prompt.context} {prompt.question}")
            w = FOLLOW_UP_WEIGHT
            query = [w * a + (1 - w) * b for a, b in zip(query, whole, strict=True)]
        # Only the question's own words: in a follow-up, the earlier turns' words are the topic.
        question_words = content_words(prompt.question)
        for candidate, vector in zip(candidates, vectors, strict=True):
            # Unit vectors: a cosine, or in a follow-up the weighted mean of the two cosines.
            cosine = sum(a * b for a, b in zip(query, vector, strict=True))
            shared = len(question_words & content_words(candidate.text))
            bonus = WORD_BONUS * shared / len(question_words) if question_words else 0.0
            # Rounded so float noise between runs cannot reorder near-ties.
            penalty = SUPERSEDED_PENALTY if candidate.superseded else 0.0
            if "|" in candidate.text and not any(ch.isdigit() for ch in candidate.text):
                penalty += HEADER_ROW_PENALTY
            candidate.score = round(cosine + bonus - penalty, 6)
        ranked = sorted(candidates, key=lambda c: (-c.score, c.sources[0], c.position))
        best = ranked[0].score
        chosen: list[_Candidate] = []
        per_source: dict[int, int] = {}
        words = 0
        for candidate in ranked:
            if len(chosen) == MAX_SENTENCES or candidate.score < best - MARGIN:
                break
            first = candidate.sources[0]
            length = self.count_tokens(candidate.text) + 1
            if per_source.get(first, 0) >= MAX_PER_SOURCE or (chosen and words + length > max_tokens):
                continue
            per_source[first] = per_source.get(first, 0) + 1
            words += length
            chosen.append(candidate)
        return [cite(c.text, c.sources) for c in chosen]

    def _candidates(self, prompt: Prompt) -> list[_Candidate]:
        """Every sentence of every source once; a sentence in several sources cites them all."""
        by_text: dict[str, _Candidate] = {}
        for source in sorted(prompt.sources, key=lambda s: s.n):
            for sentence in split_sentences(without_orders(source.text)):
                if looks_like_instruction(sentence):
                    continue
                sentence = remove_markers(sentence)
                if len(_WORD.findall(sentence)) < 2:
                    continue
                found = by_text.get(sentence)
                if found is None:
                    by_text[sentence] = _Candidate(sentence, [source.n], len(by_text), source.superseded)
                elif source.n not in found.sources:
                    found.sources.append(source.n)
                    found.superseded = found.superseded and source.superseded
        return list(by_text.values())

    def generate(self, prompt: Prompt, *, max_tokens: int) -> Generation:
        return self._generation(" ".join(self.answer_sentences(prompt, max_tokens=max_tokens)))

    def stream(self, prompt: Prompt, *, max_tokens: int) -> Iterator[str | Generation]:
        parts: list[str] = []
        for sentence in self.answer_sentences(prompt, max_tokens=max_tokens):
            delta = f" {sentence}" if parts else sentence
            parts.append(delta)
            yield delta
        yield self._generation("".join(parts))

    def count_tokens(self, text: str) -> int:
        # Words: nothing here has a tokenizer of its own, and words are what the answer is made of.
        return len(text.split())

    def _generation(self, text: str) -> Generation:
        return Generation(
            text=text,
            prompt_tokens=0,  # no model read a prompt
            completion_tokens=self.count_tokens(text),
            model=self.model,
            generator=self.name,
        )
