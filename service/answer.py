"""The one path from a question to an answer: retrieve, prompt, generate, verify, and fall back.

Routes, the streaming endpoint and ``bench/`` all call into here, so what is measured is what users get.
Whatever the mode, an answer never carries a Markdown image, a link, a URL no source holds or a
sentence repeating the system prompt (:mod:`service.injection`).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace

from ingest.embed import Embedder
from ingest.settings import Settings
from service.cite import Verification, remove_markers, split_sentences, verify_answer
from service.errors import BadRequest, GeneratorError
from service.generate.base import Generator
from service.generate.extractive import ExtractiveGenerator
from service.injection import defuse_links, repeats_system_prompt
from service.prompt import NOT_COVERED, PromptSet
from service.retrieve import NO_FILTERS, Filters, HybridRetriever, Retrieval
from service.types import Answer, Generation, Prompt, Source

log = logging.getLogger("ragfirst.answer")


@dataclass
class AnswerContext:
    """Everything one answer needs, built once per process (see ``service/api/app.py``)."""

    settings: Settings
    embedder: Embedder
    prompts: PromptSet


class GeneratorFailed(GeneratorError):
    """A generator error that still carries the retrieved sources, for the error response."""

    def __init__(self, cause: GeneratorError, sources: list[Source]) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.sources = sources


def check_question(question: str, settings: Settings) -> str:
    """:raises BadRequest: empty, or longer than ``RAG_MAX_QUESTION_CHARS``."""
    text = question.strip()
    if not text:
        raise BadRequest("question is empty")
    if len(text) > settings.max_question_chars:
        raise BadRequest(
            f"question is {len(text)} characters, over the limit of {settings.max_question_chars} "
            "(RAG_MAX_QUESTION_CHARS)"
        )
    return text


def check_top_k(top_k: int | None, settings: Settings) -> int:
    k = settings.top_k if top_k is None else top_k
    if not 1 <= k <= settings.max_top_k:
        raise BadRequest(f"top_k must be between 1 and {settings.max_top_k} (RAG_MAX_TOP_K), not {k}")
    return k


@dataclass
class Prepared:
    """Retrieval done and the prompt built; generation is next (or nothing, when not covered)."""

    question: str
    retrieval: Retrieval
    prompt: Prompt | None
    timings_ms: dict[str, float]

    @property
    def covered(self) -> bool:
        return self.prompt is not None


def prepare(
    question: str,
    *,
    ctx: AnswerContext,
    retriever: HybridRetriever,
    generator: Generator,
    collection: str,
    top_k: int | None = None,
    filters: Filters = NO_FILTERS,
    context: str = "",
) -> Prepared:
    """Retrieve and build the prompt; below the relevance floor there is no prompt at all.

    ``context`` (a follow-up's earlier user turns) is searched with, before the question, and
    carried by the prompt; the question alone is what the prompt asks.
    """
    settings = ctx.settings
    question = check_question(question, settings)
    context = context.strip()
    search = check_question(f"{context} {question}", settings) if context else question
    k = check_top_k(top_k, settings)
    retrieval = retriever.search(search, k, filters)
    timings = dict(retrieval.timings_ms)
    if not retrieval.sources or retrieval.best_similarity < settings.relevance_floor:
        log.info("not covered: best similarity %.3f", retrieval.best_similarity)
        return Prepared(question, retrieval, None, timings)
    t0 = time.perf_counter()
    budget = generator.context_tokens - settings.max_answer_tokens
    prompt = ctx.prompts.build(
        question,
        retrieval.sources,
        collection=collection,
        count_tokens=generator.count_tokens,
        budget=budget,
    )
    if context:
        prompt = replace(prompt, context=context)
    timings["prompt"] = (time.perf_counter() - t0) * 1000
    return Prepared(question, retrieval, prompt, timings)


def not_covered(prepared: Prepared, *, debug: bool) -> Answer:
    return Answer(
        answer=NOT_COVERED,
        citations=[],
        sources=prepared.retrieval.sources,
        covered=False,
        generator="none",
        model="none",
        timings_ms=prepared.timings_ms,
        prompt=None if not debug else "",
    )


def finish(
    prepared: Prepared,
    generation: Generation,
    *,
    ctx: AnswerContext,
    strict: bool | None,
    debug: bool,
    generate_ms: float,
) -> Answer:
    """Verify a generation's citations; in strict mode (``RAG_STRICT_CITATIONS`` when ``strict`` is
    None) drop what fails, and fall back to extractive when nothing verified is left."""
    assert prepared.prompt is not None
    prompt = prepared.prompt
    strict = ctx.settings.strict_citations if strict is None else strict
    timings = {**prepared.timings_ms, "generate": generate_ms}
    t0 = time.perf_counter()
    checked = verify_answer(
        generation.text,
        prompt.sources,
        embedder=ctx.embedder,
        similarity_floor=ctx.settings.verify_similarity,
    )
    text, removed = checked.text(strict=strict)
    text, guarded = guard_answer(text, prompt)
    removed = [*removed, *guarded]
    fallback = False
    if strict and not (text and _has_verified_content(checked, text)):
        extractive = ExtractiveGenerator(ctx.embedder).generate(
            prompt, max_tokens=ctx.settings.max_answer_tokens
        )
        checked = verify_answer(
            extractive.text,
            prompt.sources,
            embedder=ctx.embedder,
            similarity_floor=ctx.settings.verify_similarity,
        )
        text, more_removed = checked.text(strict=True)
        text, guarded = guard_answer(text, prompt)
        removed = [*removed, *more_removed, *guarded] if text else removed
        fallback = True
    if not text:
        text = NOT_COVERED
    timings["verify"] = (time.perf_counter() - t0) * 1000
    gone = {_plain(g) for g in guarded}
    kept_sentences = {
        s.text for s in checked.sentences if (s.verified or not strict) and _plain(s.display) not in gone
    }
    citations = [c for c in checked.citations if c.sentence in kept_sentences and (c.verified or not strict)]
    answer = Answer(
        answer=text,
        citations=citations,
        sources=prompt.sources,
        covered=text != NOT_COVERED,
        generator="extractive" if fallback else generation.generator,
        model=generation.model,
        fallback=fallback,
        removed=removed,
        prompt_tokens=generation.prompt_tokens,
        completion_tokens=generation.completion_tokens,
        timings_ms=timings,
        prompt=prompt.as_text() if debug else None,
    )
    log.info(
        "answered: generator=%s fallback=%s removed=%d timings=%s",
        answer.generator, answer.fallback, len(answer.removed), answer.timings_ms,
    )  # fmt: skip
    return answer


def guard_answer(text: str, prompt: Prompt) -> tuple[str, list[str]]:
    """``text`` without sentences that repeat the system prompt, and with links defused; and the
    sentences removed. Sources the prompt holds may be quoted, even where the system prompt says
    the same."""
    system = "\n".join(m["content"] for m in prompt.messages if m["role"] == "system")
    sources = [s.text for s in prompt.sources]
    removed: list[str] = []
    if system:
        kept: list[str] = []
        pos = 0
        for s, e in split_sentences(text):
            if repeats_system_prompt(text[s:e], system, sources):
                kept.append(text[pos:s])
                removed.append(text[s:e])
                pos = e
        kept.append(text[pos:])
        text = "".join(kept)
    return defuse_links(text, sources), removed


def _plain(sentence: str) -> str:
    return re.sub(r"\s+", " ", remove_markers(sentence)).strip()


def _has_verified_content(checked: Verification, text: str) -> bool:
    if not text.strip():
        return False
    if text.strip() == NOT_COVERED:
        return True  # the model abstained: an honest answer, nothing to fall back from
    return any(s.verified and s.citations for s in checked.sentences)


def answer_question(
    question: str,
    *,
    ctx: AnswerContext,
    retriever: HybridRetriever,
    generator: Generator,
    collection: str,
    top_k: int | None = None,
    filters: Filters = NO_FILTERS,
    strict: bool | None = None,
    debug: bool = False,
    context: str = "",
) -> Answer:
    """Answer ``question`` from ``collection`` with verified citations; ``context`` as for
    :func:`prepare`.

    :raises BadRequest: an empty or oversized question, or a top_k out of range.
    :raises GeneratorFailed: the generator timed out or is down; carries the sources.
    """
    prepared = prepare(
        question, ctx=ctx, retriever=retriever, generator=generator, collection=collection,
        top_k=top_k, filters=filters, context=context,
    )  # fmt: skip
    if prepared.prompt is None:
        return not_covered(prepared, debug=debug)
    t0 = time.perf_counter()
    try:
        generation = generator.generate(prepared.prompt, max_tokens=ctx.settings.max_answer_tokens)
    except GeneratorError as exc:
        raise GeneratorFailed(exc, prepared.prompt.sources) from exc
    generate_ms = (time.perf_counter() - t0) * 1000
    return finish(prepared, generation, ctx=ctx, strict=strict, debug=debug, generate_ms=generate_ms)


def stream_answer(
    question: str,
    *,
    ctx: AnswerContext,
    retriever: HybridRetriever,
    generator: Generator,
    collection: str,
    top_k: int | None = None,
    filters: Filters = NO_FILTERS,
    strict: bool | None = None,
    debug: bool = False,
) -> Iterator[tuple[str, object]]:
    """Events of a streamed answer: ``("sources", [Source])``, ``("delta", str)``..., then
    ``("answer", Answer)`` with the verified text and citations, or ``("error", GeneratorFailed)``."""
    prepared = prepare(
        question, ctx=ctx, retriever=retriever, generator=generator, collection=collection,
        top_k=top_k, filters=filters,
    )  # fmt: skip
    if prepared.prompt is None:
        yield "sources", prepared.retrieval.sources
        yield "answer", not_covered(prepared, debug=debug)
        return
    sources = prepared.prompt.sources
    yield "sources", sources
    t0 = time.perf_counter()
    generation: Generation | None = None
    try:
        for item in generator.stream(prepared.prompt, max_tokens=ctx.settings.max_answer_tokens):
            if isinstance(item, Generation):
                generation = item
            else:
                yield "delta", item
    except GeneratorError as exc:
        yield "error", GeneratorFailed(exc, sources)
        return
    if generation is None:
        generation = Generation("", 0, 0, generator.model, generator.name)
    generate_ms = (time.perf_counter() - t0) * 1000
    yield "answer", finish(prepared, generation, ctx=ctx, strict=strict, debug=debug, generate_ms=generate_ms)
