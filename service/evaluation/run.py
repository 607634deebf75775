"""Run a gold set through retrieval and up the ladder, one generator at a time.

The ladder is the route ragfirst argues for, one step per rung, same questions, same generator:

    bare       the question alone
    system     + the system prompt
    few_shot   + the few-shot examples
    retrieval  + the retrieved, numbered sources (the relevance floor may answer "not covered")
    verified   + citation verification, strict: what the service returns

``retrieval`` and ``verified`` share one generation: the last rung checks the very text the one
before it shows, so the difference between them is verification alone. A generator that cannot
answer without sources (extractive) skips the first three rungs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from service.answer import AnswerContext, finish, not_covered, prepare
from service.cite import verify_answer
from service.evaluation import metrics as m
from service.evaluation.gold import GoldQuestion
from service.generate.base import Generator
from service.prompt import messages_tokens
from service.retrieve import HybridRetriever
from service.runtime import Runtime
from service.types import Citation, Generation, Prompt, Source


@dataclass(frozen=True)
class Rung:
    name: str
    label: str
    retrieval: bool
    system: bool = True
    examples: bool = True
    verify: bool = False


RUNGS = (
    Rung("bare", "bare question", retrieval=False, system=False, examples=False),
    Rung("system", "+ system prompt", retrieval=False, examples=False),
    Rung("few_shot", "+ few-shot examples", retrieval=False),
    Rung("retrieval", "+ retrieved sources", retrieval=True),
    Rung("verified", "+ citation verification", retrieval=True, verify=True),
)
RETRIEVAL_MODES = ("dense", "keyword", "hybrid")
# Chunks fetched per retriever: several chunks of one document collapse to one rank, and the
# document-level metrics look ten documents deep.
RETRIEVAL_POOL = 50
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Prices:
    """Money per million tokens, as the user's provider charges."""

    prompt_per_million: float = 0.0
    completion_per_million: float = 0.0


# -- retrieval -------------------------------------------------------------------------------------


@dataclass
class RetrievalRow:
    question_id: str
    mode: str
    ranked: list[str]
    hit_at_1: float
    hit_at_5: float
    mrr_at_10: float
    ndcg_at_10: float


def rank_documents(retriever: HybridRetriever, question: str, mode: str) -> list[tuple[str, float]]:
    """``(source, score)`` pairs, best first, of one retriever (chunks, so sources may repeat)."""
    if mode == "dense":
        return [
            (h.chunk.metadata["source"], h.score) for h in retriever.dense.retrieve(question, RETRIEVAL_POOL)
        ]
    if mode == "keyword":
        return [
            (h.chunk.metadata["source"], h.score)
            for h in retriever.keyword.retrieve(question, RETRIEVAL_POOL)
        ]
    if mode == "hybrid":
        return [(s.source, s.score) for s in retriever.search(question, RETRIEVAL_POOL).sources]
    raise ValueError(f"unknown retrieval mode {mode!r}")


def evaluate_retrieval(
    questions: Sequence[GoldQuestion], retriever: HybridRetriever, *, on_progress: Progress | None = None
) -> tuple[dict[str, dict[str, float]], list[RetrievalRow]]:
    """hit@1, hit@5, MRR@10 and nDCG@10 of each retrieval mode, over the answerable questions."""
    rows: list[RetrievalRow] = []
    for q in questions:
        if not q.answerable:
            continue
        for mode in RETRIEVAL_MODES:
            ranked = m.rank_with_ties(rank_documents(retriever, q.question, mode), q.sources)
            rows.append(
                RetrievalRow(
                    q.id,
                    mode,
                    ranked[:10],
                    m.hit_at_k(ranked, q.sources, 1),
                    m.hit_at_k(ranked, q.sources, 5),
                    m.mrr_at_k(ranked, q.sources, 10),
                    m.ndcg_at_k(ranked, q.sources, 10),
                )
            )
        if on_progress:
            on_progress(f"retrieval {q.id}")
    table: dict[str, dict[str, float]] = {}
    for mode in RETRIEVAL_MODES:
        mine = [r for r in rows if r.mode == mode]
        table[mode] = {
            key: sum(getattr(r, key) for r in mine) / len(mine) if mine else 0.0
            for key in ("hit_at_1", "hit_at_5", "mrr_at_10", "ndcg_at_10")
        }
        table[mode]["questions"] = len(mine)
    return table, rows


# -- the ladder ------------------------------------------------------------------------------------


@dataclass
class RungRow:
    """One question at one rung."""

    question_id: str
    kind: str
    rung: str
    answer: str
    answerable: bool
    correct: bool
    fact_recall: float | None
    abstained: bool
    prompt_tokens: int
    completion_tokens: int
    overhead_tokens: int
    latency_ms: float
    citations: int = 0
    citation_precision: float | None = None
    citation_recall: float | None = None
    verified_share: float | None = None
    fallback: bool = False
    retrieved_gold: bool | None = None
    failure: str = ""


def judge(q: GoldQuestion, answer: str) -> tuple[bool, float | None, bool]:
    """(correct, fact recall, abstained). An answerable question is answered correctly when every
    fact is there and nothing from a superseded document is; an unanswerable one, by abstaining."""
    abstained = m.is_abstention(answer)
    if not q.answerable:
        return abstained, None, abstained
    recall = m.fact_recall(answer, q.facts) if q.facts else None
    wrong = any(m.fact_found(answer, a) for a in q.avoid)
    correct = not abstained and not wrong and (recall is None or recall == 1.0)
    return correct, recall, abstained


def supported(citation: Citation, q: GoldQuestion, sources: Sequence[Source]) -> bool:
    """Does a citation point at a passage that answers the question? Judged by the gold set, not by
    the verifier, so that verification is measured rather than trusted: the cited document is one
    the gold set names, or the cited passage holds one of the question's facts."""
    if citation.source in q.sources:
        return True
    passage = next((s.text for s in sources if s.n == citation.n), "")
    return any(m.fact_found(passage, f) for f in q.facts)


def _overhead(prompt: Prompt, generator: Generator) -> int:
    """Tokens spent on instructions and examples: what a fine-tune could at most bake into weights."""
    return messages_tokens(prompt.messages[:-1], generator.count_tokens)


def _row(
    q: GoldQuestion,
    rung: Rung,
    answer: str,
    *,
    generation: Generation | None,
    prompt: Prompt | None,
    generator: Generator,
    latency_ms: float,
) -> RungRow:
    correct, recall, abstained = judge(q, answer)
    prompt_tokens = generation.prompt_tokens if generation else 0
    if generation and not prompt_tokens and prompt:
        # A generator without a model (extractive) reports none: count what a model would be sent.
        prompt_tokens = messages_tokens(prompt.messages, generator.count_tokens)
    return RungRow(
        q.id,
        q.kind,
        rung.name,
        answer,
        q.answerable,
        correct,
        recall,
        abstained,
        prompt_tokens,
        generation.completion_tokens if generation else 0,
        _overhead(prompt, generator) if prompt else 0,
        latency_ms,
    )


def _with_citations(
    row: RungRow, q: GoldQuestion, citations: Sequence[Citation], sources: Sequence[Source], share: float
) -> RungRow:
    row.citations = len(citations)
    row.citation_precision = m.citation_precision([supported(c, q, sources) for c in citations])
    row.citation_recall = (
        m.citation_recall({c.source for c in citations}, q.sources) if q.answerable else None
    )
    row.verified_share = share
    row.retrieved_gold = any(s.source in q.sources for s in sources) if q.answerable else None
    return row


def answers_without_sources(generator: Generator) -> bool:
    return not getattr(generator, "needs_sources", False)


def run_ladder(
    questions: Sequence[GoldQuestion],
    *,
    ctx: AnswerContext,
    retriever: HybridRetriever,
    generator: Generator,
    collection: str,
    top_k: int | None = None,
    rungs: Sequence[Rung] = RUNGS,
    on_progress: Progress | None = None,
) -> list[RungRow]:
    """Every question at every rung (closed-book rungs skipped for generators that need sources)."""
    rows: list[RungRow] = []
    max_tokens = ctx.settings.max_answer_tokens
    closed = [r for r in rungs if not r.retrieval] if answers_without_sources(generator) else []
    open_book = [r for r in rungs if r.retrieval]
    for q in questions:
        for rung in closed:
            prompt = ctx.prompts.closed_book(
                q.question, collection=collection, with_system=rung.system, with_examples=rung.examples
            )
            t0 = time.perf_counter()
            generation = generator.generate(prompt, max_tokens=max_tokens)
            ms = (time.perf_counter() - t0) * 1000
            rows.append(
                _row(
                    q,
                    rung,
                    generation.text,
                    generation=generation,
                    prompt=prompt,
                    generator=generator,
                    latency_ms=ms,
                )
            )
        if open_book:
            rows.extend(
                _open_book(
                    q,
                    open_book,
                    ctx=ctx,
                    retriever=retriever,
                    generator=generator,
                    collection=collection,
                    top_k=top_k,
                )
            )
        if on_progress:
            on_progress(f"{generator.name} {q.id}")
    for row in rows:
        row.failure = classify_failure(row)
    return rows


def _open_book(
    q: GoldQuestion,
    rungs: Sequence[Rung],
    *,
    ctx: AnswerContext,
    retriever: HybridRetriever,
    generator: Generator,
    collection: str,
    top_k: int | None,
) -> list[RungRow]:
    t0 = time.perf_counter()
    prepared = prepare(
        q.question, ctx=ctx, retriever=retriever, generator=generator, collection=collection, top_k=top_k
    )
    out: list[RungRow] = []
    if prepared.prompt is None:
        answer = not_covered(prepared, debug=False)
        ms = (time.perf_counter() - t0) * 1000
        for rung in rungs:
            row = _row(
                q, rung, answer.answer, generation=None, prompt=None, generator=generator, latency_ms=ms
            )
            out.append(_with_citations(row, q, [], prepared.retrieval.sources, 1.0))
        return out
    prompt = prepared.prompt
    generation = generator.generate(prompt, max_tokens=ctx.settings.max_answer_tokens)
    generated_at = time.perf_counter()
    for rung in rungs:
        text, citations, fallback, ms = generation.text, None, False, (generated_at - t0) * 1000
        if rung.verify:
            answer = finish(
                prepared,
                generation,
                ctx=ctx,
                strict=True,
                debug=False,
                generate_ms=(generated_at - t0) * 1000,
            )
            text, citations, fallback = answer.answer, answer.citations, answer.fallback
            ms = (time.perf_counter() - t0) * 1000
        row = _row(q, rung, text, generation=generation, prompt=prompt, generator=generator, latency_ms=ms)
        row.fallback = fallback
        # Checked on the text each rung shows; before verification the model's own markers are
        # measured, not applied.
        checked = verify_answer(
            text, prompt.sources, embedder=ctx.embedder, similarity_floor=ctx.settings.verify_similarity
        )
        cited = checked.citations if citations is None else citations
        out.append(_with_citations(row, q, cited, prompt.sources, checked.verified_share))
    return out


def classify_failure(row: RungRow) -> str:
    """Why a wrong answer is wrong: ``retrieval`` when no gold document reached the prompt (or the
    floor said "not covered"), ``generation`` when it did and the text still missed; ``abstention``
    for an unanswerable question answered anyway. Empty for a correct answer."""
    if row.correct:
        return ""
    if not row.answerable:
        return "abstention"
    if row.retrieved_gold is False:
        return "retrieval"
    return "generation"


# -- aggregates ------------------------------------------------------------------------------------


@dataclass
class RungSummary:
    rung: str
    label: str
    questions: int
    accuracy: float
    answer_accuracy: float | None
    fact_recall: float | None
    abstention_accuracy: float | None
    false_abstention: float | None
    citation_precision: float | None
    citation_recall: float | None
    verified_share: float | None
    fallback_share: float | None
    prompt_tokens: float
    completion_tokens: float
    overhead_tokens: float
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    cost_per_question: float
    failures: dict[str, int] = field(default_factory=dict)


def summarise_rungs(rows: Sequence[RungRow], prices: Prices) -> list[RungSummary]:
    out = []
    for rung in RUNGS:
        mine = [r for r in rows if r.rung == rung.name]
        if not mine:
            continue
        answerable = [r for r in mine if r.answerable]
        unanswerable = [r for r in mine if not r.answerable]
        has_citations = [r for r in mine if r.citations]
        failures: dict[str, int] = {}
        for r in mine:
            if r.failure:
                failures[r.failure] = failures.get(r.failure, 0) + 1
        prompt_mean = sum(r.prompt_tokens for r in mine) / len(mine)
        completion_mean = sum(r.completion_tokens for r in mine) / len(mine)
        latencies = [r.latency_ms for r in mine]
        out.append(
            RungSummary(
                rung=rung.name,
                label=rung.label,
                questions=len(mine),
                accuracy=sum(r.correct for r in mine) / len(mine),
                answer_accuracy=_share(answerable, lambda r: r.correct),
                fact_recall=m.mean(r.fact_recall for r in answerable),
                abstention_accuracy=_share(unanswerable, lambda r: r.abstained),
                false_abstention=_share(answerable, lambda r: r.abstained),
                citation_precision=m.mean(r.citation_precision for r in has_citations)
                if rung.retrieval
                else None,
                citation_recall=m.mean(r.citation_recall for r in answerable) if rung.retrieval else None,
                verified_share=m.mean(r.verified_share for r in mine) if rung.retrieval else None,
                fallback_share=_share(mine, lambda r: r.fallback) if rung.verify else None,
                prompt_tokens=prompt_mean,
                completion_tokens=completion_mean,
                overhead_tokens=sum(r.overhead_tokens for r in mine) / len(mine),
                latency_p50_ms=m.percentile(latencies, 50),
                latency_p95_ms=m.percentile(latencies, 95),
                cost_per_question=m.price(
                    round(prompt_mean),
                    round(completion_mean),
                    prompt_per_million=prices.prompt_per_million,
                    completion_per_million=prices.completion_per_million,
                ),
                failures=failures,
            )
        )
    return out


def _share(rows: Sequence[RungRow], test: Callable[[RungRow], bool]) -> float | None:
    return sum(test(r) for r in rows) / len(rows) if rows else None


def to_json(obj: Any) -> Any:
    """Dataclasses (and lists of them) as plain JSON values."""
    if isinstance(obj, list):
        return [to_json(o) for o in obj]
    return asdict(obj)


# -- the whole run ---------------------------------------------------------------------------------


def evaluate(
    questions: Sequence[GoldQuestion],
    *,
    runtime: Runtime,
    collection: str,
    generators: Sequence[str],
    prices: Prices = Prices(),
    gold_name: str = "gold set",
    top_k: int | None = None,
    on_progress: Progress | None = None,
) -> dict[str, Any]:
    """Retrieval metrics and one ladder per generator, as the JSON report (see ``report.py``).

    :raises UnknownCollection: no such collection.
    :raises ValueError: an unknown generator name.
    """
    from service.evaluation.gold import summarise
    from service.evaluation.report import fine_tune_summary

    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    t0 = time.perf_counter()
    retriever = runtime.retriever(collection)
    retrieval, retrieval_rows = evaluate_retrieval(questions, retriever, on_progress=on_progress)
    ladders: dict[str, Any] = {}
    for name in generators:
        generator = runtime.generator(name)
        rows = run_ladder(
            questions,
            ctx=runtime.context,
            retriever=retriever,
            generator=generator,
            collection=collection,
            top_k=top_k,
            on_progress=on_progress,
        )
        rungs = summarise_rungs(rows, prices)
        ladders[name] = {
            "model": generator.model,
            # A generator without a model reads no instructions: its token figures are what a model
            # would be sent, and there is nothing for a fine-tune to save.
            "reads_prompt": answers_without_sources(generator),
            "rungs": to_json(rungs),
            "fine_tune": asdict(fine_tune_summary(name, rungs, prices=prices, gold_questions=len(questions))),
            "questions": to_json(rows),
        }
    return {
        "meta": {
            "gold": gold_name,
            "collection": collection,
            "questions": len(questions),
            "kinds": summarise(questions).by_kind,
            "generators": list(generators),
            "started": started,
            "seconds": time.perf_counter() - t0,
            "prices": asdict(prices),
            "top_k": top_k or runtime.settings.top_k,
            "embed_model": runtime.settings.embed_model,
        },
        "retrieval": retrieval,
        "retrieval_questions": to_json(retrieval_rows),
        "ladders": ladders,
    }
