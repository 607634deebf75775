"""Evaluation metrics against hand-computed values: retrieval, facts, abstention, citations, aggregates.

Logarithms are written out: 1/log2(3) = 0.6309297535714575, 1/log2(4) = 0.5,
1/log2(5) = 0.43067655807339306.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.evaluation.metrics import (
    ABSTENTION_PHRASES,
    all_facts,
    citation_precision,
    citation_recall,
    dedupe,
    fact_found,
    fact_recall,
    hit_at_k,
    is_abstention,
    mean,
    mrr_at_k,
    ndcg_at_k,
    normalise,
    percentile,
    price,
    rank_with_ties,
)

INV_LOG2_3 = 0.6309297535714575
INV_LOG2_5 = 0.43067655807339306

# --------------------------------------------------------------------------------------------------
# dedupe and ties
# --------------------------------------------------------------------------------------------------


def test_dedupe_keeps_first_occurrence_in_order() -> None:
    assert dedupe(["a", "b", "a", "c", "b"]) == ["a", "b", "c"]
    assert dedupe([]) == []


def test_rank_with_ties_puts_non_relevant_first_among_equal_scores() -> None:
    scored = [("a", 0.9), ("b", 0.5), ("x", 0.5), ("y", 0.5), ("z", 0.1)]
    assert rank_with_ties(scored, {"b"}) == ["a", "x", "y", "b", "z"]


def test_rank_with_ties_two_way_tie_relevant_listed_first() -> None:
    assert rank_with_ties([("r", 0.5), ("n", 0.5)], {"r"}) == ["n", "r"]


def test_rank_with_ties_keeps_input_order_among_equal_relevance() -> None:
    assert rank_with_ties([("b", 1.0), ("a", 1.0), ("c", 2.0)], set()) == ["c", "b", "a"]


def test_rank_with_ties_dedupes_to_best_position() -> None:
    # Chunks of document d1 score 0.2 and 0.9; d1 ranks at its best chunk.
    assert rank_with_ties([("d1", 0.2), ("d2", 0.8), ("d1", 0.9)], {"d2"}) == ["d1", "d2"]


def test_rank_with_ties_rejects_nan() -> None:
    with pytest.raises(ValueError, match="NaN"):
        rank_with_ties([("a", float("nan"))], {"a"})


def test_tie_does_not_flatter_metrics() -> None:
    ranked = rank_with_ties([("rel", 0.7), ("other", 0.7)], {"rel"})
    assert mrr_at_k(ranked, {"rel"}, 10) == 0.5
    assert hit_at_k(ranked, {"rel"}, 1) == 0.0


# --------------------------------------------------------------------------------------------------
# hit@k
# --------------------------------------------------------------------------------------------------


def test_hit_at_k_normal() -> None:
    assert hit_at_k(["x", "a", "y"], {"a"}, 2) == 1.0


def test_hit_at_k_cutoff_before_hit() -> None:
    assert hit_at_k(["x", "y", "a"], {"a"}, 2) == 0.0


def test_hit_at_k_counts_distinct_ids() -> None:
    # Four entries but only two distinct ids: "a" is the second distinct id.
    assert hit_at_k(["x", "x", "x", "a"], {"a"}, 2) == 1.0
    assert hit_at_k(["x", "x", "x", "a"], {"a"}, 1) == 0.0


def test_hit_at_k_empty_inputs() -> None:
    assert hit_at_k([], {"a"}, 5) == 0.0
    assert hit_at_k(["a"], set(), 5) == 0.0


def test_hit_at_k_rejects_k_below_one() -> None:
    with pytest.raises(ValueError, match="k must be at least 1"):
        hit_at_k(["a"], {"a"}, 0)


# --------------------------------------------------------------------------------------------------
# MRR@k
# --------------------------------------------------------------------------------------------------


def test_mrr_at_k_normal() -> None:
    assert mrr_at_k(["x", "y", "a"], {"a"}, 3) == pytest.approx(1 / 3)
    assert mrr_at_k(["a", "x"], {"a"}, 3) == 1.0


def test_mrr_at_k_cutoff_before_hit() -> None:
    assert mrr_at_k(["x", "y", "a"], {"a"}, 2) == 0.0


def test_mrr_at_k_first_of_several_relevant() -> None:
    assert mrr_at_k(["x", "b", "a"], {"a", "b"}, 3) == 0.5


def test_mrr_at_k_duplicates() -> None:
    assert mrr_at_k(["x", "x", "x", "a"], {"a"}, 2) == 0.5


def test_mrr_at_k_empty_ranking() -> None:
    assert mrr_at_k([], {"a"}, 3) == 0.0


# --------------------------------------------------------------------------------------------------
# nDCG@k
# --------------------------------------------------------------------------------------------------


def test_ndcg_single_relevant_at_top() -> None:
    assert ndcg_at_k(["a", "x", "y"], {"a"}, 3) == 1.0


def test_ndcg_single_relevant_at_rank_three() -> None:
    # DCG = 1/log2(4) = 0.5, IDCG = 1.
    assert ndcg_at_k(["x", "y", "a"], {"a"}, 3) == pytest.approx(0.5)


def test_ndcg_two_relevant() -> None:
    # DCG = 1/log2(3) + 1/log2(5) = 0.6309297535714575 + 0.43067655807339306 = 1.0616063116448506
    # IDCG = 1 + 1/log2(3) = 1.6309297535714575
    value = ndcg_at_k(["x", "a", "y", "b"], {"a", "b"}, 4)
    assert value == pytest.approx((INV_LOG2_3 + INV_LOG2_5) / (1 + INV_LOG2_3))
    assert value == pytest.approx(0.6509209298071326)


def test_ndcg_cutoff_drops_later_hit() -> None:
    # k = 2: only "a" at rank 2 counts; ideal still has min(2, 2) = 2 items.
    # DCG = 0.6309297535714575, IDCG = 1.6309297535714575.
    assert ndcg_at_k(["x", "a", "y", "b"], {"a", "b"}, 2) == pytest.approx(0.38685280723454163)


def test_ndcg_cutoff_before_any_hit() -> None:
    assert ndcg_at_k(["x", "y", "a"], {"a"}, 2) == 0.0


def test_ndcg_ideal_limited_to_k() -> None:
    # Three relevant ids but k = 1: the ideal is one relevant item, so a relevant top hit is perfect.
    assert ndcg_at_k(["a", "x"], {"a", "b", "c"}, 1) == 1.0
    # k = 2: IDCG = 1 + 1/log2(3); DCG = 1.
    assert ndcg_at_k(["a", "x"], {"a", "b", "c"}, 2) == pytest.approx(1 / 1.6309297535714575)


def test_ndcg_duplicates() -> None:
    # Distinct ids [x, a]: DCG = 1/log2(3); without dedupe the top 2 would be [x, x] and score 0.
    assert ndcg_at_k(["x", "x", "a"], {"a"}, 2) == pytest.approx(INV_LOG2_3)


def test_ndcg_empty_ranking() -> None:
    assert ndcg_at_k([], {"a"}, 5) == 0.0


def test_ndcg_empty_relevant_raises() -> None:
    with pytest.raises(ValueError, match="undefined"):
        ndcg_at_k(["a", "b"], set(), 5)
    with pytest.raises(ValueError, match="undefined"):
        ndcg_at_k([], [], 5)


# --------------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------------

ids = st.sampled_from(list("abcdefgh"))
rankings = st.lists(ids, max_size=12)
relevant_sets = st.sets(ids, min_size=1, max_size=5)
ks = st.integers(min_value=1, max_value=10)


@given(rankings, relevant_sets, ks)
def test_ndcg_in_unit_interval(ranked: list[str], relevant: set[str], k: int) -> None:
    value = ndcg_at_k(ranked, relevant, k)
    assert 0.0 <= value <= 1.0 + 1e-12


@given(relevant_sets, st.lists(ids, max_size=6), ks)
def test_ndcg_ideal_ranking_is_one(relevant: set[str], others: list[str], k: int) -> None:
    ranked = sorted(relevant) + [item for item in others if item not in relevant]
    assert ndcg_at_k(ranked, relevant, k) == pytest.approx(1.0)


@given(rankings, relevant_sets, ks)
def test_hit_monotone_in_k_and_bounds_mrr(ranked: list[str], relevant: set[str], k: int) -> None:
    assert hit_at_k(ranked, relevant, k) <= hit_at_k(ranked, relevant, k + 1)
    assert mrr_at_k(ranked, relevant, k) <= hit_at_k(ranked, relevant, k)


@given(st.sets(ids, min_size=1), relevant_sets)
def test_all_tied_scores_put_relevant_last(items: set[str], relevant: set[str]) -> None:
    ranked = rank_with_ties([(item, 1.0) for item in sorted(items)], relevant)
    flags = [item in relevant for item in ranked]
    assert flags == sorted(flags)


# --------------------------------------------------------------------------------------------------
# Normalisation and facts
# --------------------------------------------------------------------------------------------------


def test_normalise_whitespace_and_case() -> None:
    assert normalise("  Foo\t\n  BAR\u00a0baz  ") == "foo bar baz"


def test_normalise_dashes() -> None:
    assert normalise("\u2010\u2011\u2012\u2013\u2014\u2212") == "------"
    assert normalise("Mon\u2013Fri") == "mon-fri"


def test_normalise_quotes() -> None:
    assert normalise("\u201cHi\u201d \u2018there\u2019") == "\"hi\" 'there'"


def test_normalise_nfkc() -> None:
    # Ligature fi and fullwidth A decompose under NFKC.
    assert normalise("\ufb01le \uff21") == "file a"


def test_fact_found_substring_and_case() -> None:
    answer = "Employees get 25 DAYS of paid vacation [1]."
    assert fact_found(answer, "25 days")
    assert not fact_found(answer, "30 days")


def test_fact_found_normalises_both_sides() -> None:
    assert fact_found("Open Mon\u2013Fri,\n  9\u201317.", "mon-fri, 9-17")
    assert fact_found("Open Mon-Fri.", "Mon\u2014Fri")


def test_fact_found_alternatives() -> None:
    answer = "You get twenty\u2011five days."
    assert fact_found(answer, ["25 days", "twenty-five days"])
    assert not fact_found(answer, ["30 days", "thirty days"])


def test_fact_found_rejects_blank_facts() -> None:
    with pytest.raises(ValueError):
        fact_found("anything", "   ")
    with pytest.raises(ValueError):
        fact_found("anything", [])


def test_fact_recall_share() -> None:
    answer = "Maria Lopez approves 25 days; they expire on 31 March."
    facts = ["25 days", ["Maria Lopez", "the People team"], "extension 4410"]
    assert fact_recall(answer, facts) == pytest.approx(2 / 3)
    assert fact_recall(answer, ["25 days", "31 march"]) == 1.0


def test_fact_recall_empty_raises() -> None:
    with pytest.raises(ValueError, match="without facts"):
        fact_recall("answer", [])


def test_all_facts() -> None:
    answer = "Passwords rotate every 90 days and need 14 characters."
    assert all_facts(answer, ["90 days", ["14 characters", "fourteen characters"]])
    assert not all_facts(answer, ["90 days", "extension 4410"])


# --------------------------------------------------------------------------------------------------
# Abstention
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("phrase", ABSTENTION_PHRASES)
def test_each_abstention_phrase_detected(phrase: str) -> None:
    assert is_abstention(f"Sorry. {phrase.upper()} here, as far as I can tell.")


@pytest.mark.parametrize(
    "answer",
    [
        "The documents do not cover this.",
        "I don\u2019t know.",
        "I  can\u2019t\nfind that in the sources.",
        "That is not mentioned anywhere.",
        "",
        "   \n ",
    ],
)
def test_abstentions(answer: str) -> None:
    assert is_abstention(answer)


@pytest.mark.parametrize(
    "answer",
    [
        "Employees get 25 days of paid vacation per calendar year [1].",
        "The documents cover vacation in detail [2].",
    ],
)
def test_non_abstentions(answer: str) -> None:
    assert not is_abstention(answer)


def test_abstention_phrase_list_matches_brief() -> None:
    assert len(ABSTENTION_PHRASES) == 12
    assert all(phrase == normalise(phrase) for phrase in ABSTENTION_PHRASES)


# --------------------------------------------------------------------------------------------------
# Citations
# --------------------------------------------------------------------------------------------------


def test_citation_precision() -> None:
    assert citation_precision([True, False, True, True]) == 0.75
    assert citation_precision([False]) == 0.0
    assert citation_precision([]) is None


def test_citation_recall() -> None:
    assert citation_recall({"a", "b", "c"}, {"a", "d"}) == 0.5
    assert citation_recall(["a", "a"], ["a"]) == 1.0
    assert citation_recall([], {"a"}) == 0.0
    assert citation_recall({"a"}, set()) is None


# --------------------------------------------------------------------------------------------------
# Aggregates and cost
# --------------------------------------------------------------------------------------------------


def test_mean_skips_none() -> None:
    assert mean([1.0, None, 2.0, None, 6.0]) == 3.0
    assert mean(v for v in [0.5, 0.25]) == 0.375


def test_mean_none_when_no_values() -> None:
    assert mean([None, None]) is None
    assert mean([]) is None


def test_percentile_hand_values() -> None:
    # Position p/100 * (n - 1): p50 -> 1.5 -> 20 + 0.5*10; p95 -> 2.85 -> 30 + 0.85*10.
    assert percentile([10, 20, 30, 40], 50) == pytest.approx(25.0)
    assert percentile([10, 20, 30, 40], 95) == pytest.approx(38.5)
    assert percentile([40, 10, 30, 20], 95) == pytest.approx(38.5)
    assert percentile([10, 20, 30, 40], 0) == 10.0
    assert percentile([10, 20, 30, 40], 100) == 40.0
    assert percentile([7.0], 95) == 7.0


def test_percentile_returns_plain_float() -> None:
    assert type(percentile([1.0, 2.0], 50)) is float


def test_percentile_empty_is_none() -> None:
    assert percentile([], 50) is None


def test_percentile_rejects_p_out_of_range() -> None:
    with pytest.raises(ValueError, match="p must be within"):
        percentile([1.0], 101)
    with pytest.raises(ValueError, match="p must be within"):
        percentile([1.0], -1)


def test_price() -> None:
    # 1500 * 0.15 / 1e6 + 500 * 0.60 / 1e6 = 0.000225 + 0.0003
    assert price(1500, 500, prompt_per_million=0.15, completion_per_million=0.60) == pytest.approx(0.000525)
    assert price(1_000_000, 0, prompt_per_million=2.5, completion_per_million=10.0) == pytest.approx(2.5)
    assert price(0, 2_000_000, prompt_per_million=2.5, completion_per_million=10.0) == pytest.approx(20.0)
    assert price(0, 0, prompt_per_million=2.5, completion_per_million=10.0) == 0.0


def test_price_rejects_negative_tokens() -> None:
    with pytest.raises(ValueError, match="negative"):
        price(-1, 0, prompt_per_million=1.0, completion_per_million=1.0)
