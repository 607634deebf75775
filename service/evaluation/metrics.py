"""Pure metric functions for evaluating the whole route (retrieve, prompt, generate, cite) on a gold set.

Nothing here loads a model or touches the disk: each function takes ids, strings, booleans or numbers
and returns a number, so the ladder and the reports can be tested against hand-computed values.

Conventions shared by the retrieval metrics (:func:`hit_at_k`, :func:`mrr_at_k`, :func:`ndcg_at_k`):

* A ranking is a sequence of ids, best first. It may hold the same id several times (a ranking of
  chunks read as a ranking of documents); only the first occurrence counts, so "the first ``k``"
  always means the first ``k`` *distinct* ids (see :func:`dedupe`).
* Relevance is binary: an id is relevant when it is in the gold ``relevant`` collection.
* Ties in score are broken pessimistically by :func:`rank_with_ties`: non-relevant before relevant,
  so a tie never flatters a retriever.
* Unanswerable questions have no relevant sources. Their retrieval metrics are undefined (nDCG
  raises :class:`ValueError`); callers skip them and judge those questions by :func:`is_abstention`.

Answer metrics compare normalised text (:func:`normalise`): a fact is found when its normalised
form, or that of any of its alternatives, is a substring of the normalised answer.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Collection, Iterable, Sequence

import numpy as np

__all__ = [
    "ABSTENTION_PHRASES",
    "Fact",
    "all_facts",
    "citation_precision",
    "citation_recall",
    "dedupe",
    "fact_found",
    "fact_recall",
    "hit_at_k",
    "is_abstention",
    "mean",
    "mrr_at_k",
    "ndcg_at_k",
    "normalise",
    "percentile",
    "price",
    "rank_with_ties",
]

Fact = str | Sequence[str]
"""A fact an answer must state: one string, or a sequence of alternatives of which any one suffices."""

ABSTENTION_PHRASES: tuple[str, ...] = (
    "documents do not cover",
    "do not cover this",
    "not covered",
    "no information",
    "does not say",
    "do not say",
    "not mentioned",
    "cannot find",
    "can't find",
    "i don't know",
    "i do not know",
    "not in the documents",
)
"""Normalised phrases that mark an answer as saying the documents do not answer the question."""

_TYPOGRAPHY = str.maketrans(
    {
        "\u2010": "-",  # hyphen
        "\u2011": "-",  # non-breaking hyphen
        "\u2012": "-",  # figure dash
        "\u2013": "-",  # en dash
        "\u2014": "-",  # em dash
        "\u2212": "-",  # minus sign
        "\u2018": "'",  # left single quotation mark
        "\u2019": "'",  # right single quotation mark
        "\u201c": '"',  # left double quotation mark
        "\u201d": '"',  # right double quotation mark
    }
)
_WHITESPACE = re.compile(r"\s+")


# --------------------------------------------------------------------------------------------------
# Retrieval
# --------------------------------------------------------------------------------------------------


def dedupe(ranked: Sequence[str]) -> list[str]:
    """
    Keep the first occurrence of each id, in order.

    A ranking of chunks becomes a ranking of documents: a document ranks where its best chunk ranks.

    :param ranked: Ids, best first; the same id may occur more than once.
    :returns: The distinct ids in order of first occurrence.
    """
    return list(dict.fromkeys(ranked))


def rank_with_ties(scored: Sequence[tuple[str, float]], relevant: Collection[str]) -> list[str]:
    """
    Order ids by score, highest first, breaking ties pessimistically, then deduplicate.

    Among equal scores, non-relevant ids come before relevant ones, so a retriever that cannot tell
    a relevant item from a non-relevant one gets no credit for the tie. Otherwise the input order is
    kept (the sort is stable). An id that occurs several times ranks at its best position.

    :param scored: ``(id, score)`` pairs in any order; a higher score is better.
    :param relevant: The gold relevant ids.
    :returns: The distinct ids, best first.
    :raises ValueError: If a score is NaN (it has no place in an order).
    """
    if any(math.isnan(score) for _, score in scored):
        raise ValueError("a score is NaN")
    relevant_set = set(relevant)
    ordered = sorted(scored, key=lambda pair: (-pair[1], pair[0] in relevant_set))
    return dedupe([item for item, _ in ordered])


def _top_k(ranked: Sequence[str], k: int) -> list[str]:
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    return dedupe(ranked)[:k]


def hit_at_k(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    """
    Whether any relevant id is among the first ``k`` distinct ids.

    :param ranked: Ids, best first; duplicates count once, at their first position.
    :param relevant: The gold relevant ids.
    :param k: Cut-off, at least 1.
    :returns: 1.0 on a hit, else 0.0 (also for an empty ranking or empty ``relevant``).
    :raises ValueError: If ``k`` is below 1.
    """
    relevant_set = set(relevant)
    return 1.0 if any(item in relevant_set for item in _top_k(ranked, k)) else 0.0


def mrr_at_k(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    """
    Reciprocal rank of the first relevant id within the first ``k`` distinct ids.

    Ranks count from 1. Average the result over questions for the mean reciprocal rank.

    :param ranked: Ids, best first; duplicates count once, at their first position.
    :param relevant: The gold relevant ids.
    :param k: Cut-off, at least 1.
    :returns: ``1 / rank`` of the first relevant id, or 0.0 when none is within the cut-off.
    :raises ValueError: If ``k`` is below 1.
    """
    relevant_set = set(relevant)
    for rank, item in enumerate(_top_k(ranked, k), start=1):
        if item in relevant_set:
            return 1.0 / rank
    return 0.0


def ndcg_at_k(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    """
    Normalised discounted cumulative gain at ``k`` with binary relevance.

    ``DCG = sum(rel_i / log2(i + 1))`` over the first ``k`` distinct ids, ``i`` counting from 1 and
    ``rel_i`` being 1 for a relevant id and 0 otherwise. It is divided by the ideal DCG, that of a
    ranking with ``min(len(relevant), k)`` relevant ids at the top, so the result lies in [0, 1].

    :param ranked: Ids, best first; duplicates count once, at their first position.
    :param relevant: The gold relevant ids; must not be empty.
    :param k: Cut-off, at least 1.
    :returns: nDCG in [0, 1]; 0.0 for an empty ranking.
    :raises ValueError: If ``relevant`` is empty (nDCG is undefined; skip unanswerable questions),
        or if ``k`` is below 1.
    """
    relevant_set = set(relevant)
    if not relevant_set:
        raise ValueError("nDCG is undefined without relevant ids; skip unanswerable questions")
    top = _top_k(ranked, k)
    dcg = math.fsum(1.0 / math.log2(i + 1) for i, item in enumerate(top, start=1) if item in relevant_set)
    ideal = math.fsum(1.0 / math.log2(i + 1) for i in range(1, min(len(relevant_set), k) + 1))
    return dcg / ideal


# --------------------------------------------------------------------------------------------------
# Answers
# --------------------------------------------------------------------------------------------------


def normalise(text: str) -> str:
    """
    Normalise text for comparison.

    NFKC, casefold, typographic dashes (‐ ‑ ‒ – — −) to ``-``, curly quotes (‘ ’) to ``'`` and
    (“ ”) to ``"``, every run of whitespace to one space, then strip.

    :param text: Any text.
    :returns: The normalised text.
    """
    text = unicodedata.normalize("NFKC", text).casefold().translate(_TYPOGRAPHY)
    return _WHITESPACE.sub(" ", text).strip()


def _alternatives(fact: Fact) -> list[str]:
    options = [fact] if isinstance(fact, str) else list(fact)
    normalised = [normalise(option) for option in options]
    if not normalised or not all(normalised):
        raise ValueError(f"a fact needs at least one alternative and none may be blank: {fact!r}")
    return normalised


def fact_found(answer: str, fact: Fact) -> bool:
    """
    Whether the answer states a fact: a normalised substring match.

    :param answer: The generated answer.
    :param fact: One string, or a sequence of alternatives of which any one suffices.
    :returns: True when the normalised fact, or any normalised alternative, occurs in the normalised
        answer.
    :raises ValueError: If the fact has no alternatives or one is blank (a blank would match anything).
    """
    text = normalise(answer)
    return any(option in text for option in _alternatives(fact))


def fact_recall(answer: str, facts: Sequence[Fact]) -> float:
    """
    Share of the facts that the answer states.

    :param answer: The generated answer.
    :param facts: The gold facts, each a string or a sequence of alternatives.
    :returns: Found facts divided by all facts, in [0, 1].
    :raises ValueError: If ``facts`` is empty, or a fact is as :func:`fact_found` rejects.
    """
    if not facts:
        raise ValueError("fact recall is undefined without facts")
    return sum(fact_found(answer, fact) for fact in facts) / len(facts)


def all_facts(answer: str, facts: Sequence[Fact]) -> bool:
    """
    Whether the answer states every fact.

    :param answer: The generated answer.
    :param facts: The gold facts, each a string or a sequence of alternatives.
    :returns: True when every fact is found.
    :raises ValueError: If ``facts`` is empty, or a fact is as :func:`fact_found` rejects.
    """
    return fact_recall(answer, facts) == 1.0


def is_abstention(answer: str) -> bool:
    """
    Whether the answer says the documents do not answer the question.

    :param answer: The generated answer.
    :returns: True when the normalised answer is empty or contains one of :data:`ABSTENTION_PHRASES`.
    """
    text = normalise(answer)
    return not text or any(phrase in text for phrase in ABSTENTION_PHRASES)


def citation_precision(cited: Sequence[bool]) -> float | None:
    """
    Share of citations that are supported by the source they cite.

    :param cited: One flag per citation: True when the citation was verified as supported.
    :returns: Supported citations divided by all citations, or None when there are none.
    """
    if not cited:
        return None
    return sum(bool(flag) for flag in cited) / len(cited)


def citation_recall(cited_sources: Collection[str], required: Collection[str]) -> float | None:
    """
    Share of the required sources that the answer cites.

    :param cited_sources: Ids of the sources the answer cites (duplicates count once).
    :param required: Ids of the sources a complete answer must cite.
    :returns: ``|required ∩ cited| / |required|``, or None when ``required`` is empty.
    """
    required_set = set(required)
    if not required_set:
        return None
    return len(required_set & set(cited_sources)) / len(required_set)


# --------------------------------------------------------------------------------------------------
# Aggregates and cost
# --------------------------------------------------------------------------------------------------


def mean(values: Iterable[float | None]) -> float | None:
    """
    Mean of the values that are not None.

    None stands for "undefined for this question" (e.g. citation precision without citations).

    :param values: Numbers, some possibly None.
    :returns: The arithmetic mean of the non-None values, or None when there are none.
    """
    present = [value for value in values if value is not None]
    if not present:
        return None
    return math.fsum(present) / len(present)


def percentile(values: Sequence[float], p: float) -> float | None:
    """
    The ``p``-th percentile with linear interpolation (numpy's default method).

    For sorted values ``v`` of length ``n`` the position is ``p / 100 * (n - 1)``, interpolated
    between its neighbours: ``[10, 20, 30, 40]`` gives 25.0 at p50 and 38.5 at p95.

    :param values: Numbers, e.g. latencies in seconds.
    :param p: Percentile in [0, 100].
    :returns: The percentile, or None for empty input.
    :raises ValueError: If ``p`` is outside [0, 100].
    """
    if not 0.0 <= p <= 100.0:
        raise ValueError(f"p must be within [0, 100], got {p}")
    if len(values) == 0:
        return None
    return float(np.percentile(np.asarray(values, dtype=float), p))


def price(
    prompt_tokens: int,
    completion_tokens: int,
    *,
    prompt_per_million: float,
    completion_per_million: float,
) -> float:
    """
    Money spent on one call, from token counts and per-million-token prices.

    :param prompt_tokens: Tokens sent (input).
    :param completion_tokens: Tokens generated (output).
    :param prompt_per_million: Price of one million prompt tokens.
    :param completion_per_million: Price of one million completion tokens.
    :returns: The cost, in the currency of the prices.
    :raises ValueError: If a token count is negative.
    """
    if prompt_tokens < 0 or completion_tokens < 0:
        raise ValueError(f"token counts must not be negative: {prompt_tokens}, {completion_tokens}")
    return (prompt_tokens * prompt_per_million + completion_tokens * completion_per_million) / 1_000_000
