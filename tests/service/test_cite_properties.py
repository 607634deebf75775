"""Properties of citation parsing and verification on arbitrary answer strings.

A small model writes anything: markers in every spelling, numbers past the sources given, brackets
left open, any Unicode. Whatever it writes, nothing raises, and no citation and no marker left in
the shown text names a source that was not given.
"""

from __future__ import annotations

import dataclasses

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.embed import Embedder
from service.cite import parse_markers, split_sentences, verify_answer
from service.types import Source

# The autouse fixture that runs torch on one thread for the module: short embeddings, busy cores.
from tests.service.test_cite import SMALL, _one_torch_thread  # noqa: F401

NUMBER = st.one_of(st.integers(-2, 9), st.integers(10, 10**10)).map(str)
# Digits of other scripts (fullwidth, Arabic-Indic) match \d as well.
ODD_NUMBER = st.sampled_from(["３", "٣", "1.5", "01", " 2 ", "1e3", ""])
MARKER = st.one_of(
    st.builds("[{}]".format, NUMBER),
    st.builds("[{}]".format, ODD_NUMBER),
    st.builds("[{}, {}]".format, NUMBER, NUMBER),
    st.builds("[{}-{}]".format, NUMBER, NUMBER),
    st.builds("[{}–{}]".format, NUMBER, NUMBER),
    st.builds("[^{}]".format, NUMBER),
    st.builds("[Source {}]".format, NUMBER),
    st.builds("[source: {}; {}]".format, NUMBER, NUMBER),
    st.builds("[[{}]{}]".format, NUMBER, NUMBER),
)
PIECE = st.one_of(
    st.text(st.characters(exclude_categories=("Cs",)), max_size=15),
    MARKER,
    st.sampled_from(["Employees get 25 days of paid vacation", "Hotel costs are reimbursed up to $180",
                     "Passwords must be rotated every 90 days", ". ", "\n", "\n- ", "# ", "[", "]", "e.g. "]),
)  # fmt: skip


@st.composite
def given_sources(draw: st.DrawFn) -> list[Source]:
    """Some of the three sources (maybe none), numbered as a prompt might number them."""
    chosen = draw(st.lists(st.sampled_from(SMALL), unique_by=lambda s: s.n, max_size=3))
    numbers = draw(st.lists(st.integers(1, 6), min_size=len(chosen), max_size=len(chosen), unique=True))
    return [dataclasses.replace(s, n=n) for s, n in zip(chosen, numbers, strict=True)]


@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
@given(pieces=st.lists(PIECE, max_size=20), sources=given_sources())
def test_no_citation_of_a_source_not_given(
    pieces: list[str], sources: list[Source], embedder: Embedder
) -> None:
    answer = "".join(pieces)
    valid = {s.n for s in sources}
    parse_markers(answer)  # any string parses
    for start, end in split_sentences(answer):
        assert 0 <= start < end <= len(answer)
    v = verify_answer(answer, sources, embedder=embedder)
    assert {c.n for c in v.citations} <= valid
    for s in v.sentences:
        assert set(s.cited) <= valid
        assert {c.n for c in s.citations} <= valid
    for strict in (True, False):
        text, removed = v.text(strict=strict)
        assert set(parse_markers(text)) <= valid, text
        assert len(removed) <= len(v.sentences)
    for c in v.citations:
        src = next(s for s in sources if s.n == c.n)
        assert src.text[c.start - src.start : c.end - src.start] == c.quote
