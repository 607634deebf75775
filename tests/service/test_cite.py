"""Citation checks against the real all-MiniLM-L6-v2: quotes, fabricated facts, attribution, strict mode.

Sources are slices of one longer fake document, so citation offsets are document offsets and
``DOC[c.start:c.end] == c.quote`` is meaningful.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.embed import Embedder
from service.cite import CheckedSentence, Verification, parse_markers, split_sentences, verify_answer
from service.types import Citation, Source

DOC = """# Employee Handbook

Welcome to Kestrelmoor. This handbook covers vacation, passwords and travel.

## Vacation

Employees get 25 days of paid vacation per calendar year. Vacation requests are approved by Maria Lopez \
in the People team. Unused vacation days expire on 31 March of the following year.

## Passwords

Passwords must be rotated every 90 days. A password must contain at least 14 characters. The IT Service \
Desk resets forgotten passwords at extension 4410.

## Travel

Economy class is required for flights shorter than 6 hours. Hotel costs are reimbursed up to $180 per night.
"""


def section(n: int, heading: str, *, until: str = "\n## ") -> Source:
    """Source ``n``: the document from ``heading`` up to the next ``until`` (or the end)."""
    start = DOC.index(heading)
    end = DOC.find(until, start + 1)
    end = len(DOC) if end < 0 else end + (len(until) if until == "." else 0)
    return Source(
        n=n,
        chunk_ids=(f"handbook-{n}",),
        document_id="handbook",
        source="handbook.md",
        title="Employee Handbook",
        section=heading.lstrip("# "),
        page=None,
        text=DOC[start:end],
        start=start,
        end=end,
        score=0.5,
    )


SOURCES = [section(1, "## Vacation"), section(2, "## Passwords"), section(3, "## Travel")]
# One sentence each: few passages to embed, so the property test stays fast.
SMALL = [
    section(1, "Employees get", until="."),
    section(2, "Passwords must", until="."),
    section(3, "Hotel", until="."),
]
TRUE_VACATION = "Employees get 25 days of paid vacation each year [1]."


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    """Each answer embeds a handful of short texts; on a busy small machine, torch's thread pool
    spin-waits for cores (6x slower here with 2 threads). One thread for this module, then restored."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def verify(answer: str, embedder: Embedder, sources: list[Source] = SOURCES) -> Verification:
    return verify_answer(answer, sources, embedder=embedder)


def only(v: Verification) -> CheckedSentence:
    assert len(v.sentences) == 1, v.sentences
    return v.sentences[0]


def assert_span(c: Citation, sources: list[Source] = SOURCES) -> None:
    src = next(s for s in sources if s.n == c.n)
    assert src.start <= c.start <= c.end <= src.end
    assert DOC[c.start : c.end] == c.quote
    assert src.text[c.start - src.start : c.end - src.start] == c.quote


# -- splitting and markers ---------------------------------------------------------------------------


def test_split_sentences_keeps_markers_with_their_sentence() -> None:
    text = "Employees get 25 days [1]. They may carry over 5.[2] See e.g. Dr. Lopez. Ask U.S. staff [3]."
    assert [text[s:e] for s, e in split_sentences(text)] == [
        "Employees get 25 days [1].",
        "They may carry over 5.[2]",
        "See e.g. Dr. Lopez.",
        "Ask U.S. staff [3].",
    ]


def test_split_sentences_markdown() -> None:
    text = (
        "## Summary\n"
        "- First bullet [1]\n"
        "* Second bullet. Two sentences [2]\n"
        "1. Numbered item\n\n"
        "A hard-wrapped line\n"
        "continues here. Last one.\n"
        "[3]"
    )
    assert [text[s:e] for s, e in split_sentences(text)] == [
        "Summary",
        "First bullet [1]",
        "Second bullet.",
        "Two sentences [2]",
        "Numbered item",
        "A hard-wrapped line\ncontinues here.",
        "Last one.\n[3]",
    ]


@pytest.mark.parametrize(
    ("sentence", "expected"),
    [
        ("no markers", []),
        ("one [1].", [1]),
        ("adjacent [2][3] and again [2]", [2, 3]),
        ("list [1, 2] and [3;4]", [1, 2, 3, 4]),
        ("range [1-3] and en dash [5–6]", [1, 2, 3, 5, 6]),
        ("descending [3-1]", [3, 1]),
        ("footnote [^2], named [Source 4], [source: 5, 6]", [2, 4, 5, 6]),
        ("zero [0] and nested [[7]]", [0, 7]),
        ("not markers: [a], [], [12345678901], arr[x]", []),
    ],
)
def test_parse_markers(sentence: str, expected: list[int]) -> None:
    assert parse_markers(sentence) == expected


# -- the checks -------------------------------------------------------------------------------------


def test_correct_cited_sentence_verifies_with_quote_span(embedder: Embedder) -> None:
    v = verify(TRUE_VACATION, embedder)
    s = only(v)
    assert s.verified and s.cited == (1,) and s.needs_support
    (c,) = s.citations
    assert v.citations == [c]
    assert c.verified and c.reason == "" and c.n == 1
    assert c.quote == "Employees get 25 days of paid vacation per calendar year."
    assert c.score >= 0.55
    assert (c.source, c.title, c.section, c.page) == ("handbook.md", "Employee Handbook", "Vacation", None)
    assert_span(c)
    assert v.verified_share == 1.0


def test_fabricated_number_fails_and_names_it(embedder: Embedder) -> None:
    s = only(verify("Employees get 28 days of paid vacation each year [1].", embedder))
    assert not s.verified
    (c,) = s.citations
    assert not c.verified
    assert "number 28 not in source 1" in c.reason
    # The failed check still shows the closest passage: it is similar, only the number is wrong.
    assert c.quote == "Employees get 25 days of paid vacation per calendar year."
    assert c.score >= 0.55
    assert_span(c)


def test_wrong_name_fails(embedder: Embedder) -> None:
    s = only(verify("Vacation requests are approved by John Smith in the People team [1].", embedder))
    assert not s.verified
    (c,) = s.citations
    assert c.reason == "name 'John Smith' not in source 1"
    assert "Maria Lopez" in c.quote


def test_true_claim_citing_the_wrong_source_fails(embedder: Embedder) -> None:
    s = only(verify(TRUE_VACATION.replace("[1]", "[2]"), embedder))
    assert not s.verified and s.cited == (2,)
    (c,) = s.citations
    assert c.n == 2 and not c.verified
    assert "number 25 not in source 2" in c.reason
    assert "below 0.55" in c.reason
    assert_span(c)


def test_similarity_alone_can_fail(embedder: Embedder) -> None:
    s = only(verify("Remote work is allowed two days a week [1].", embedder))
    assert not s.verified
    assert s.citations[0].reason.startswith("similarity ")
    assert s.citations[0].reason.endswith(" below 0.55")


def test_out_of_range_markers_are_dropped(embedder: Embedder) -> None:
    v = verify(
        "Passwords must be rotated every 90 days [7]. Hotels are paid up to $180 a night [3, 0].", embedder
    )
    assert [s.cited for s in v.sentences] == [(), (3,)]
    assert v.sentences[1].citations[0].sentence == v.sentences[1].text  # as in the answer
    assert all(c.n in (1, 2, 3) for c in v.citations)
    text, removed = v.text(strict=False)
    # The first sentence lost its only marker but is still true: it is attributed to source 2, and the
    # text shows the marker it earned.
    assert text == "Passwords must be rotated every 90 days [2]. Hotels are paid up to $180 a night [3]."
    assert removed == []
    assert v.sentences[0].verified and [c.n for c in v.sentences[0].citations] == [2]


def test_uncited_factual_sentence_is_attributed(embedder: Embedder) -> None:
    s = only(verify("Hotel costs are reimbursed up to $180 per night.", embedder))
    assert s.verified and s.cited == ()
    (c,) = s.citations
    assert c.n == 3 and c.verified
    assert c.quote == "Hotel costs are reimbursed up to $180 per night."
    assert_span(c)


def test_uncited_fabrication_is_unverified(embedder: Embedder) -> None:
    s = only(verify("Hotel costs are reimbursed up to $250 per night.", embedder))
    assert not s.verified and s.needs_support and s.citations == ()
    assert "number $250 not in source 3" in s.reason


def test_sentences_that_need_no_support(embedder: Embedder) -> None:
    answer = (
        "## Vacation at Kestrelmoor in 2025\n"
        "Good question! The documents do not cover parking at the office. Here is what they say:\n"
        "- Employees get 25 days of paid vacation each year [1]\n"
        "Anything else about the 2025 rules?"
    )
    v = verify(answer, embedder)
    assert [s.needs_support for s in v.sentences] == [False, False, False, False, True, False]
    assert v.verified_share == 1.0
    assert v.text(strict=True) == (answer, [])


def test_strict_removes_the_fabricated_sentence_and_keeps_the_true_one(embedder: Embedder) -> None:
    answer = f"{TRUE_VACATION} Passwords must be rotated every 30 days [2]. Hotels cost up to $180 [3]."
    v = verify(answer, embedder)
    assert [s.verified for s in v.sentences] == [True, False, True]
    assert "number 30 not in source 2" in v.sentences[1].reason
    assert v.verified_share == pytest.approx(2 / 3)
    assert v.text(strict=True) == (
        f"{TRUE_VACATION} Hotels cost up to $180 [3].",
        ["Passwords must be rotated every 30 days [2]."],
    )
    assert v.text(strict=False) == (answer, [])


def test_strict_drops_an_emptied_bullet_line(embedder: Embedder) -> None:
    answer = (
        "Key points:\n\n"
        "- Passwords need at least 14 characters [2]\n"
        "- Passwords need at least 8 characters [2]\n"
        "- Economy class for flights under 6 hours [3]\n"
    )
    text, removed = verify(answer, embedder).text(strict=True)
    assert text == (
        "Key points:\n\n"
        "- Passwords need at least 14 characters [2]\n"
        "- Economy class for flights under 6 hours [3]"
    )
    assert removed == ["Passwords need at least 8 characters [2]"]


def test_sentence_citing_two_sources_needs_both(embedder: Embedder) -> None:
    combined = verify("Employees get 25 days of vacation and passwords need 14 characters [1][2].", embedder)
    assert only(combined).verified
    assert [(c.n, c.verified) for c in combined.citations] == [(1, True), (2, True)]
    # A second, irrelevant marker makes the sentence unverified: it never keeps a bad citation.
    extra = only(verify("Employees get 25 days of paid vacation each year [1][3].", embedder))
    assert not extra.verified
    assert [(c.n, c.verified) for c in extra.citations] == [(1, True), (3, False)]


def test_paraphrase_with_number_words(embedder: Embedder) -> None:
    """Number words are no key terms: a close paraphrase with "twenty-five" passes on similarity.

    The other way round, a digit the source spells out is missing: "25" is not in "twenty-five".
    """
    s = only(verify("Staff receive twenty-five vacation days [1].", embedder))
    assert s.verified
    assert s.citations[0].quote == "Employees get 25 days of paid vacation per calendar year."

    spelled = Source(
        n=1,
        chunk_ids=("x",),
        document_id="x",
        source="x.md",
        title="",
        section="",
        page=None,
        text="Employees get twenty-five days of paid vacation.",
        start=0,
        end=48,
        score=1.0,
    )
    s = only(verify_answer("Staff receive 25 vacation days [1].", [spelled], embedder=embedder))
    assert not s.verified
    assert s.citations[0].reason == "number 25 not in source 1"


def test_terms_tolerate_case_and_punctuation(embedder: Embedder) -> None:
    s = only(verify("The IT service desk resets passwords at extension 4,410 [2].", embedder))
    assert s.verified, s.reason


def test_one_embedding_call_per_answer(embedder: Embedder, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = embedder.embed_documents

    def counting(texts: list[str]) -> list[list[float]]:
        calls.append(len(texts))
        return real(texts)

    monkeypatch.setattr(embedder, "embed_documents", counting)
    verify(f"{TRUE_VACATION} Hotels cost up to $180. Passwords expire after 90 days [2].", embedder)
    assert len(calls) == 1
    verify("Hello. [7]", embedder)  # nothing to check: nothing embedded
    assert len(calls) == 1


@pytest.mark.parametrize(
    "answer",
    [
        "",
        "   \n\n ",
        "[1]",
        "[1][2][9]",
        "[[[1]]] [[",
        "]]][[[1",
        "Ünïcödé ✓ 数字 25 [1] 🙂.",
        "- \n- [2]\n* \n1.",
        "…. ?! [1-99999] [0-0]",
        "x" * 5000 + " [1]",
    ],
)
def test_odd_answers_do_not_raise(answer: str, embedder: Embedder) -> None:
    v = verify(answer, embedder)
    for strict in (True, False):
        text, _ = v.text(strict=strict)
        assert "[9]" not in text and "[0" not in text
    assert 0.0 <= v.verified_share <= 1.0
    for c in v.citations:
        assert_span(c)


def test_long_answer(embedder: Embedder) -> None:
    sentences = [TRUE_VACATION, "Passwords must be rotated every 30 days [2].", "Hotels cost up to $180 [3]."]
    answer = " ".join(itertools.islice(itertools.cycle(sentences), 60))
    v = verify(answer, embedder)
    assert len(v.sentences) == 60
    assert v.verified_share == pytest.approx(2 / 3)
    text, removed = v.text(strict=True)
    assert len(removed) == 20 and "30 days" not in text


# -- properties -------------------------------------------------------------------------------------

_marker = st.builds(lambda n: f"[{n}]", st.integers(min_value=-1, max_value=6))
_word = st.sampled_from(
    ["Employees", "get", "25", "days", "Maria", "Lopez", "$180", "per", "night", "\n- ", ". "]
)
_piece = st.one_of(
    st.text(max_size=12), _marker, _word, st.sampled_from([". ", "\n", "[", "]", "[1, 4]", "[2-3]"])
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pieces=st.lists(_piece, max_size=25))
def test_arbitrary_answers(pieces: list[str], embedder: Embedder) -> None:
    answer = "".join(pieces)
    v = verify(answer, embedder, SMALL)
    valid = {s.n for s in SMALL}
    assert all(c.n in valid for c in v.citations)
    for c in v.citations:
        assert_span(c, SMALL)
    previous_end = 0
    for s in v.sentences:
        assert answer[s.start : s.end] == s.text
        assert previous_end <= s.start < s.end
        previous_end = s.end
        assert set(s.cited) <= valid
        if s.verified:
            assert s.needs_support and s.citations and all(c.verified for c in s.citations)
    assert [c for s in v.sentences for c in s.citations] == v.citations
    for strict in (True, False):
        text, removed = v.text(strict=strict)
        assert set(parse_markers(text)) <= valid
        assert len(removed) <= len(v.sentences)
    assert 0.0 <= v.verified_share <= 1.0


def test_key_terms_must_stand_in_the_matching_passage(embedder: Embedder) -> None:
    """A number found only in an unrelated part of the cited source does not support the claim."""
    text = (
        "The Edge Agent reconnects automatically when the network returns. "
        "Invoices are due within 2 weeks of issue. "
        "Enrollment tokens expire 24 hours after they are created."
    )
    src = Source(n=1, chunk_ids=("c1",), document_id="d1", source="agent.md", title="Edge Agent",
                 section="Enrollment", page=None, text=text, start=0, end=len(text), score=1.0)  # fmt: skip
    bad = verify_answer(
        "Enrollment tokens expire 2 hours after they are created [1].", [src], embedder=embedder
    )
    assert not bad.sentences[0].verified and "number 2 not in source 1" in bad.sentences[0].reason
    good = verify_answer("Enrollment tokens expire 24 hours after creation [1].", [src], embedder=embedder)
    assert good.sentences[0].verified
    assert good.citations[0].quote == "Enrollment tokens expire 24 hours after they are created."
