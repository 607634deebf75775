"""Properties of the splitter on arbitrary text, with the real all-MiniLM-L6-v2 tokenizer.

Whatever the text (any Unicode, any whitespace, words longer than a chunk, headings in any order,
titles longer than the budget), every chunk fits the model, points at the document's own text, in
order, and together the chunks lose nothing but whitespace (``check_chunks``).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.embed import Embedder
from ingest.errors import IngestError
from ingest.load import load_markdown
from ingest.split import TokenBudget, split_document
from ingest.types import Heading, LoadedDocument
from tests.ingest.test_split import check_chunks, make_budget

# Any character but lone surrogates, which no decoded file holds.
ANY_CHAR = st.characters(exclude_categories=("Cs",))
SPACES = st.sampled_from(
    [" ", "\n", "\n\n", "\t", "\r\n", "\u00a0", "\u2028", "\u3000", "\x0b", "\x0c", "\u200b", "\x1b"]
)
WORDS = st.one_of(
    st.text(ANY_CHAR, min_size=1, max_size=12),
    st.sampled_from(["vacation", "Kestrelmoor", "25", "days.", "数字", "🙂", "e\u0301", "ﬁ", "[1]", "#"]),
    # One unbroken word longer than a whole chunk: the splitter must cut inside it.
    st.builds(lambda c, n: c * n, st.sampled_from(["x", "ab", "漢", "🙂", "1."]), st.integers(300, 1500)),
)
TEXT = st.lists(st.one_of(WORDS, SPACES), max_size=160).map("".join)
PROPERTY = settings(
    max_examples=20,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


@pytest.fixture(scope="module")
def budget(embedder: Embedder) -> TokenBudget:
    return make_budget(embedder)


@st.composite
def documents(draw: st.DrawFn) -> LoadedDocument:
    """Arbitrary text with headings at arbitrary (ordered, disjoint) spans of it."""
    text = draw(TEXT)
    cuts = sorted(draw(st.sets(st.integers(0, len(text)), max_size=8)))
    headings = []
    for start, end in zip(cuts[::2], cuts[1::2], strict=False):
        headings.append(Heading(start, end, draw(st.integers(1, 6)), text[start:end].strip() or "untitled"))
    title = draw(st.one_of(st.text(ANY_CHAR, max_size=40), st.just("word " * 200)))
    return LoadedDocument(text=text, title=title, filetype="text", headings=headings)


@PROPERTY
@given(doc=documents())
def test_arbitrary_text_fits_and_is_covered(
    embedder: Embedder, budget: TokenBudget, doc: LoadedDocument
) -> None:
    check_chunks(doc, split_document(doc, budget), embedder, budget)


MARKDOWN_LINE = st.one_of(
    st.builds(lambda level, text: "#" * level + " " + text, st.integers(1, 7), TEXT.map(lambda t: t[:80])),
    TEXT,
    st.sampled_from(["", "```", "---", "===", "> quote", "- item", "1. first", "<!-- -->", "|a|b|"]),
)


@PROPERTY
@given(lines=st.lists(MARKDOWN_LINE, min_size=1, max_size=12))
def test_arbitrary_markdown_fits_and_is_covered(
    embedder: Embedder, budget: TokenBudget, lines: list[str]
) -> None:
    try:
        doc = load_markdown("\n".join(lines).encode(), "any.md")
    except IngestError:
        return  # control characters: refused as binary, with a reason, before any splitting
    check_chunks(doc, split_document(doc, budget), embedder, budget)


def test_zero_token_characters_between_pieces(embedder: Embedder) -> None:
    """Found by the property below: LangChain's splitter repeats a character that counts no tokens
    (here ESC) at the start of the next piece, which then starts inside the previous one."""
    doc = LoadedDocument(text="0" * 19 + "\x1b0", title="", filetype="text")
    small = make_budget(embedder, max_tokens=32, overlap=4, max_prefix=8)
    check_chunks(doc, split_document(doc, small), embedder, small)


@pytest.mark.parametrize("max_tokens", [32, 64])
@PROPERTY
@given(doc=documents())
def test_small_budgets_hold_too(embedder: Embedder, max_tokens: int, doc: LoadedDocument) -> None:
    small = make_budget(embedder, max_tokens=max_tokens, overlap=4, max_prefix=8)
    check_chunks(doc, split_document(doc, small), embedder, small)
