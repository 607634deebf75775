"""Splitting: no chunk is longer than the model reads, offsets point into the text, nothing is lost.

Token counts come from the real all-MiniLM-L6-v2 tokenizer (the session ``embedder``), the one whose
limit the guarantee is about.
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import docx
import pytest
from fpdf import FPDF
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.embed import Embedder
from ingest.load import LOADERS, load_document
from ingest.settings import Settings
from ingest.split import (
    SPECIAL_TOKENS,
    TokenBudget,
    embed_prefix,
    section_path,
    sections_of,
    split_document,
)
from ingest.types import Chunk, Heading, LoadedDocument

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "corpus"


def make_budget(embedder: Embedder, **changes: object) -> TokenBudget:
    """The budget the ingest pipeline builds (``Ingestor.budget``), from default settings."""
    defaults = Settings.model_fields
    values: dict[str, object] = {
        "count": embedder.count_tokens,
        "max_tokens": embedder.max_tokens,
        "overlap": defaults["chunk_overlap_tokens"].default,
        "max_prefix": defaults["max_heading_tokens"].default,
        "reserved": 0,
    }
    values.update(changes)
    return TokenBudget(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def budget(embedder: Embedder) -> TokenBudget:
    return make_budget(embedder)


def check_chunks(
    doc: LoadedDocument,
    chunks: list[Chunk],
    embedder: Embedder,
    budget: TokenBudget,
    *,
    document_prefix: str = "",
) -> None:
    """Everything a chunk list promises about ``doc``."""
    # Text outside the heading lines gives chunks; a document of headings alone gives none.
    assert bool(chunks) == bool(uncovered(doc, [])), "chunks exactly when there is body text"
    for i, chunk in enumerate(chunks):
        assert chunk.position == i
        # The headline guarantee: the model reads every word piece of every chunk.
        embedded = embedder.count_tokens(document_prefix + chunk.embed_text)
        assert embedded + SPECIAL_TOKENS <= budget.max_tokens, (embedded, chunk.embed_text[:200])
        assert chunk.tokens <= budget.max_tokens
        assert doc.text[chunk.start : chunk.end] == chunk.text
        assert chunk.text and chunk.text == chunk.text.strip()
        assert chunk.embed_text.endswith(chunk.text)
        # The physical pages of the first and last character (None for formats without pages).
        assert chunk.page == doc.page_at(chunk.start)
        assert chunk.page_end == doc.page_at(chunk.end - 1)
        if doc.pages:
            assert chunk.page is not None and chunk.page_end is not None
            assert 1 <= chunk.page <= chunk.page_end <= doc.pages[-1].page
        else:
            assert chunk.page is None and chunk.page_end is None
    starts = [c.start for c in chunks]
    assert all(a < b for a, b in itertools.pairwise(starts)), starts

    # Each chunk lies inside one section and carries that section's path.
    sections = [s for s in sections_of(doc) if doc.text[s.start : s.end].strip()]
    for chunk in chunks:
        home = [s for s in sections if s.start <= chunk.start and chunk.end <= s.end]
        assert len(home) == 1, chunk
        assert chunk.section == section_path(doc.title, home[0].trail)

    assert uncovered(doc, chunks) == []


def uncovered(doc: LoadedDocument, chunks: list[Chunk]) -> list[int]:
    """Offsets of non-whitespace characters outside every heading line and every chunk."""
    covered = bytearray(len(doc.text))
    for span in [*((h.start, h.end) for h in doc.headings), *((c.start, c.end) for c in chunks)]:
        covered[span[0] : span[1]] = b"\x01" * (span[1] - span[0])
    return [i for i, ch in enumerate(doc.text) if not covered[i] and not ch.isspace()]


# --- documents --------------------------------------------------------------------------------

HANDBOOK_MD = """\
# Employee Handbook

Welcome to Kestrelmoor. This handbook explains how we work.

## Leave

All leave is booked in the HR portal.

### Vacation

Employees get 25 days of paid vacation per calendar year. Unused days expire on 31 March.

### Sick leave

Tell your manager before 10:00 on the first day.

## Expenses

Receipts must be filed within 30 days.
"""


def synthetic_markdown() -> str:
    """A long document built to stress the splitter: very long paragraphs and lines, a single
    5,000-character word, a heading trail of well over 100 word pieces, CJK text without spaces,
    a run of repeated text and one of repeated lines."""
    rnd = random.Random(7)
    vocabulary = [
        "policy", "employee", "reimbursement", "approval", "the", "of", "and", "manager",
        "quarterly", "Kestrelmoor", "Gothenburg", "2025", "e-mail", "naïve", "résumé",
        "co-ordinated", "(see", "section)", "42%", "VPN", "multi-factor", "authentication",
    ]  # fmt: skip

    def sentence(n: int) -> str:
        return " ".join(rnd.choice(vocabulary) for _ in range(n)) + "."

    cjk = "".join(chr(rnd.randint(0x4E00, 0x9FA5)) for _ in range(3000))
    long_heading = " ".join(f"Subsystem{i} configuration" for i in range(60))
    return "\n".join(
        [
            "# Synthetic Operations Manual",
            "",
            " ".join(sentence(rnd.randint(5, 40)) for _ in range(150)),  # one huge paragraph
            "",
            "## Identifiers",
            "",
            "Before the word. " + "A" * 2500 + "b" * 2500 + " After the word.",
            "",
            f"## {long_heading}",
            "",
            f"### {long_heading} again",
            "",
            sentence(400),
            "",
            "#### 日本語と中文の節",
            "",
            cjk,
            "",
            "## Repetition",
            "",
            "All work and no play makes Jack a dull boy. " * 150,
            "",
            "\n".join(["| row | value |"] * 200),
            "",
            "## Short",
            "",
            "A last short section.",
        ]
    )


def build_pdf(pages: list[str]) -> bytes:
    pdf = FPDF()
    pdf.set_font("Helvetica", size=10)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 5, text, new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def corpus_files() -> list[Path]:
    if not CORPUS.is_dir():
        return []
    return sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.suffix.lower() in LOADERS)


CORPUS_FILES = corpus_files()


# --- the token bound, offsets and coverage ----------------------------------------------------


@pytest.mark.parametrize(
    "path",
    CORPUS_FILES or [None],
    ids=[str(p.relative_to(CORPUS)) for p in CORPUS_FILES] or ["none"],
)
def test_corpus_chunks(path: Path | None, embedder: Embedder, budget: TokenBudget) -> None:
    if path is None:
        pytest.skip("corpus/ holds no supported files yet")
    doc = load_document(path.read_bytes(), path.name)
    chunks = split_document(doc, budget)
    check_chunks(doc, chunks, embedder, budget)
    for chunk in chunks:
        assert chunk.embed_text.startswith(doc.title)


def test_synthetic_long_document(embedder: Embedder, budget: TokenBudget) -> None:
    doc = load_document(synthetic_markdown().encode(), "synthetic.md")
    chunks = split_document(doc, budget)
    check_chunks(doc, chunks, embedder, budget)
    # The long paragraph, the CJK block and the repeated text each need several chunks.
    assert len(chunks) >= 15
    assert max(c.tokens for c in chunks) > budget.max_tokens * 3 // 4
    # The 5,000-character word is inside some chunk, whole or cut, and so is the CJK text.
    word_at = doc.text.index("A" * 2500)
    assert any(c.start <= word_at < c.end for c in chunks)
    cjk_chunks = [c for c in chunks if c.section and c.section[-1] == "日本語と中文の節"]
    assert len(cjk_chunks) >= 2


def test_repeated_text_is_covered_in_order(embedder: Embedder, budget: TokenBudget) -> None:
    """Identical pieces of a repetitive text each get their own place, not the first copy's."""
    text = "x " * 2000 + "\n\nThe end is different.\n\n" + "重复的句子。" * 600
    doc = LoadedDocument(text=text, title="Repeats", filetype="text")
    chunks = split_document(doc, budget)
    check_chunks(doc, chunks, embedder, budget)
    assert chunks[-1].end == len(text.rstrip())


def test_long_heading_trail_is_trimmed(embedder: Embedder, budget: TokenBudget) -> None:
    doc = load_document(synthetic_markdown().encode(), "synthetic.md")
    chunks = split_document(doc, budget)
    deep = [c for c in chunks if len(c.section) >= 2 and c.section[0].startswith("Subsystem0")]
    assert deep
    for chunk in deep:
        prefix = chunk.embed_text[: len(chunk.embed_text) - len(chunk.text)].rstrip("\n")
        assert prefix.startswith("Synthetic Operations Manual\nSubsystem0 configuration")
        assert embedder.count_tokens(prefix) <= budget.max_prefix
        assert embedder.count_tokens(embed_prefix(doc.title, chunk.section)) > 100


@pytest.mark.parametrize("max_tokens", [32, 64, 128])
def test_small_max_tokens_with_long_headings(embedder: Embedder, max_tokens: int) -> None:
    """chunk_max_tokens can be as low as 32: a long heading trail must not push chunks over it."""
    small = make_budget(embedder, max_tokens=max_tokens, overlap=max_tokens // 4)
    doc = load_document(synthetic_markdown().encode(), "synthetic.md")
    check_chunks(doc, split_document(doc, small), embedder, small)


def test_document_prefix_counts_toward_the_limit(embedder: Embedder) -> None:
    passage = "passage: "
    reserved = make_budget(embedder, reserved=embedder.count_tokens(passage))
    doc = load_document(HANDBOOK_MD.encode() + synthetic_markdown().encode(), "handbook.md")
    chunks = split_document(doc, reserved)
    check_chunks(doc, chunks, embedder, reserved, document_prefix=passage)


def test_token_field_matches_the_tokenizer(embedder: Embedder, budget: TokenBudget) -> None:
    doc = load_document(synthetic_markdown().encode(), "synthetic.md")
    for chunk in split_document(doc, budget):
        assert chunk.tokens == embedder.count_tokens(chunk.embed_text) + SPECIAL_TOKENS


def test_neighbouring_chunks_overlap(budget: TokenBudget) -> None:
    words = " ".join(f"w{i}" for i in range(2000))
    doc = LoadedDocument(text=words, title="Words", filetype="text")
    chunks = split_document(doc, budget)
    assert len(chunks) >= 3
    for a, b in itertools.pairwise(chunks):
        assert b.start < a.end, "chunks of one section share some words"
        assert b.end > a.end


# --- section trails ---------------------------------------------------------------------------


class TestSections:
    def test_trail_without_the_title_h1(self, budget: TokenBudget) -> None:
        doc = load_document(HANDBOOK_MD.encode(), "handbook.md")
        assert doc.title == "Employee Handbook"
        chunks = split_document(doc, budget)
        by_fact = {
            "Welcome to Kestrelmoor": (),
            "booked in the HR portal": ("Leave",),
            "25 days of paid vacation": ("Leave", "Vacation"),
            "before 10:00": ("Leave", "Sick leave"),
            "within 30 days": ("Expenses",),
        }
        for fact, path in by_fact.items():
            [chunk] = [c for c in chunks if fact in c.text]
            assert chunk.section == path, fact
            assert chunk.embed_text.startswith(embed_prefix("Employee Handbook", path) + "\n\n")
        vacation = next(c for c in chunks if "25 days" in c.text)
        assert vacation.embed_text.startswith("Employee Handbook\nLeave > Vacation\n\n")
        assert "## " not in "".join(c.text for c in chunks)  # heading lines are not chunk text

    def test_title_from_front_matter_keeps_the_h1(self, budget: TokenBudget) -> None:
        data = ("---\ntitle: HB 2025\n---\n" + HANDBOOK_MD).encode()
        doc = load_document(data, "handbook.md")
        vacation = next(c for c in split_document(doc, budget) if "25 days" in c.text)
        assert vacation.section == ("Employee Handbook", "Leave", "Vacation")
        assert vacation.embed_text.startswith("HB 2025\nEmployee Handbook > Leave > Vacation")

    def test_docx_trail(self, embedder: Embedder, budget: TokenBudget) -> None:
        import io

        document = docx.Document()
        document.add_paragraph("Employee Handbook", style="Title")
        document.add_heading("Leave", level=1)
        document.add_heading("Vacation", level=2)
        document.add_paragraph("Employees get 25 days of paid vacation.")
        buffer = io.BytesIO()
        document.save(buffer)
        doc = load_document(buffer.getvalue(), "handbook.docx")
        chunks = split_document(doc, budget)
        check_chunks(doc, chunks, embedder, budget)
        [chunk] = chunks
        assert chunk.section == ("Leave", "Vacation")
        assert chunk.page is None and chunk.page_end is None

    def test_sections_of(self) -> None:
        text = "intro\n# A\nbody a\n## B\nbody b\n# C\nbody c"
        headings = [
            Heading(text.index("# A"), text.index("# A") + 4, 1, "A"),
            Heading(text.index("## B"), text.index("## B") + 5, 2, "B"),
            Heading(text.index("# C"), text.index("# C") + 4, 1, "C"),
        ]
        doc = LoadedDocument(text=text, title="T", filetype="markdown", headings=headings)
        sections = sections_of(doc)
        assert [(text[s.start : s.end].strip(), s.trail) for s in sections] == [
            ("intro", ()),
            ("body a", ("A",)),
            ("body b", ("A", "B")),
            ("body c", ("C",)),
        ]

    def test_section_path_and_prefix(self) -> None:
        assert section_path("Handbook", (" handbook ", "Leave")) == ("Leave",)
        assert section_path("Handbook", ("Leave", "Handbook")) == ("Leave", "Handbook")
        assert section_path("Handbook", ()) == ()
        assert embed_prefix("Handbook", ()) == "Handbook"
        assert embed_prefix("Handbook", ("Leave", "Vacation")) == "Handbook\nLeave > Vacation"


# --- pages ------------------------------------------------------------------------------------


def test_pdf_chunks_carry_physical_pages(embedder: Embedder, budget: TokenBudget) -> None:
    rnd = random.Random(3)
    words = ["travel", "booking", "approval", "receipt", "hotel", "train", "budget", "manager"]
    long_page = " ".join(rnd.choice(words) for _ in range(450))
    pages = [
        "Travel Policy overview.",
        long_page,
        "The per diem for Berlin is 42 euros per day.",
        "Closing remarks on page four.",
    ]
    doc = load_document(build_pdf(pages), "travel.pdf")
    chunks = split_document(doc, budget)
    check_chunks(doc, chunks, embedder, budget)
    for chunk in chunks:
        assert chunk.page == doc.page_at(chunk.start)
        assert chunk.page_end == doc.page_at(chunk.end - 1)
        assert chunk.page is not None and chunk.page_end is not None
        assert 1 <= chunk.page <= chunk.page_end <= 4
    assert doc.page_at(doc.text.index("42 euros")) == 3
    [fact] = [c for c in chunks if "42 euros" in c.text]
    assert fact.page is not None and fact.page_end is not None
    assert fact.page <= 3 <= fact.page_end
    # Page 2 alone needs several chunks.
    assert chunks[0].page == 1
    assert sum(1 for c in chunks if c.page == c.page_end == 2) >= 2
    assert chunks[-1].page_end == 4


def test_short_pdf_is_one_chunk_over_pages(budget: TokenBudget) -> None:
    doc = load_document(build_pdf(["Page one.", "Page two.", "Page three."]), "short.pdf")
    [chunk] = split_document(doc, budget)
    assert (chunk.page, chunk.page_end) == (1, 3)


# --- property ---------------------------------------------------------------------------------

VOCABULARY = [
    "leave", "vacation", "days", "x", "a", "漢字", "テキスト", "naïve", "e-mail", "42",
    "3.14", "(note)", "—", ".", ",", ";", "»", "🙂", "W" * 120, "supercalifragilistic",
    "Kestrelmoor", "multi-factor",
]  # fmt: skip
WORDS = st.sampled_from(VOCABULARY)
SPACES = st.sampled_from([" ", " ", " ", "  ", ". ", ", ", "; ", "\t"])


@st.composite
def paragraphs(draw: st.DrawFn) -> str:
    n = draw(st.integers(0, 260))
    parts: list[str] = []
    for _ in range(n):
        parts.append(draw(WORDS))
        parts.append(draw(SPACES))
    return "".join(parts)


LINES = st.one_of(
    st.builds(
        lambda level, words: "#" * level + " " + " ".join(words),
        st.integers(1, 6),
        st.lists(WORDS, min_size=1, max_size=6),
    ),
    paragraphs(),
    st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=200),
    st.sampled_from(["", "", "===", "---", "```", "> quote", "- item", "ALL CAPS HEADING"]),
)


@settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(lines=st.lists(LINES, min_size=1, max_size=14), suffix=st.sampled_from([".md", ".txt"]))
def test_any_text_fits_and_is_covered(
    embedder: Embedder, budget: TokenBudget, lines: list[str], suffix: str
) -> None:
    text = "\n".join(lines)
    if not text.strip():
        return
    doc = load_document(text.encode(), f"generated{suffix}")
    check_chunks(doc, split_document(doc, budget), embedder, budget)


def test_section_path_drops_a_first_heading_that_repeats_the_title() -> None:
    # Generated manuals put a no-break space in numbered titles; <title> has a plain one.
    assert section_path("21.9. Peer Authentication", ("21.9.\xa0Peer  Authentication", "Usage")) == ("Usage",)
    assert section_path("Handbook", ("Leave", "Vacation")) == ("Leave", "Vacation")
