"""Loaders: every format's text, title, headings and pages, and a clear error for every bad file.

The input files are built here, with the same libraries a user's tools would use (fpdf2 for PDF,
python-docx for DOCX), so the tests read real files rather than hand-made parser output.
"""

from __future__ import annotations

import io
import random
import re
import zipfile
from pathlib import Path

import docx
import pytest
from fpdf import FPDF

from ingest.errors import (
    EmptyDocument,
    IngestError,
    SkippedFile,
    UnreadableDocument,
    UnsupportedFormat,
)
from ingest.load import LOADERS, decode_text, is_supported, load_document
from ingest.types import LoadedDocument

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "corpus"
CORPUS_DOC = REPO / "docs" / "corpus.md"


def heading_slices(doc: LoadedDocument) -> list[str]:
    return [doc.text[h.start : h.end] for h in doc.headings]


def assert_headings_in_text(doc: LoadedDocument) -> None:
    """Each heading's span lies in the text and holds the heading's words.

    A PDF outline entry whose words are not on its page keeps an empty span at the page's start.
    """
    for h in doc.headings:
        assert 0 <= h.start <= h.end <= len(doc.text), h
        assert h.level >= 1 and h.text.strip(), h
        if doc.filetype == "pdf" and h.start == h.end:
            assert doc.page_at(h.start) is not None
            continue
        # A capitals line in plain text is a heading in title case.
        assert h.text.casefold() in doc.text[h.start : h.end].casefold(), h


# --- builders ---------------------------------------------------------------------------------


def build_pdf(
    pages: list[list[str]],
    *,
    title: str | None = None,
    outline: bool = False,
    font_size: float = 12,
) -> bytes:
    """A PDF with one list of lines per physical page.

    With ``outline``, a line starting with ``#``/``##`` is printed without the marks and becomes an
    outline entry of level 1/2 (``start_section``) pointing at its page.
    """
    pdf = FPDF()
    if title is not None:
        pdf.set_title(title)
    pdf.set_font("Helvetica", size=font_size)
    for lines in pages:
        pdf.add_page()
        for line in lines:
            marks = len(line) - len(line.lstrip("#"))
            text = line.lstrip("#").strip()
            if outline and marks:
                pdf.start_section(text, level=marks - 1)
            pdf.multi_cell(0, 6, text, new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def docx_bytes(document: docx.document.Document) -> bytes:
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def build_handbook_docx(core_title: str = "") -> bytes:
    document = docx.Document()
    if core_title:
        document.core_properties.title = core_title
    document.add_paragraph("Employee Handbook", style="Title")
    document.add_paragraph("Welcome to Kestrelmoor.")
    document.add_heading("Leave", level=1)
    document.add_paragraph("Leave rules follow.")
    document.add_heading("Vacation", level=2)
    document.add_paragraph("Employees get 25 days of paid vacation.")
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text = "Grade"
    table.cell(0, 1).text = "Days"
    table.cell(1, 0).text = "Senior engineer"
    table.cell(1, 1).text = "30"
    document.add_heading("Carry-over", level=3)
    document.add_paragraph("Up to five days carry over.")
    document.add_heading("Expenses", level=1)
    document.add_paragraph("Receipts within 30 days.")
    return docx_bytes(document)


# --- Markdown ---------------------------------------------------------------------------------

HANDBOOK_MD = """\
---
title: Staff Handbook 2025
owner: People Team
---
Handbook
========

Welcome paragraph.

## Leave

Leave rules.

### Vacation

Employees get 25 days.

```bash
# comment, not a heading
echo done
```

Benefits
--------

Last paragraph with `code` and *emphasis*.
"""


class TestMarkdown:
    def test_front_matter_is_the_title_and_is_not_text(self) -> None:
        doc = load_document(HANDBOOK_MD.encode(), "handbook.md")
        assert doc.filetype == "markdown"
        assert doc.title == "Staff Handbook 2025"
        assert "owner:" not in doc.text
        assert "People Team" not in doc.text
        assert doc.text.startswith("Handbook\n====")

    def test_headings_setext_and_atx_with_levels(self) -> None:
        doc = load_document(HANDBOOK_MD.encode(), "handbook.md")
        assert [(h.level, h.text) for h in doc.headings] == [
            (1, "Handbook"),
            (2, "Leave"),
            (3, "Vacation"),
            (2, "Benefits"),
        ]
        assert_headings_in_text(doc)
        slices = heading_slices(doc)
        assert slices[1].startswith("## Leave")
        assert slices[3].startswith("Benefits\n--------")

    def test_hash_inside_fenced_code_is_no_heading(self) -> None:
        doc = load_document(HANDBOOK_MD.encode(), "handbook.md")
        assert "# comment, not a heading" in doc.text
        assert all("comment" not in h.text for h in doc.headings)

    def test_body_text_kept(self) -> None:
        doc = load_document(HANDBOOK_MD.encode(), "handbook.md")
        for fact in ("Welcome paragraph.", "Employees get 25 days.", "echo done", "*emphasis*"):
            assert fact in doc.text

    def test_h1_is_the_title_without_front_matter(self) -> None:
        body = HANDBOOK_MD.split("---\n", 2)[2]
        doc = load_document(body.encode(), "handbook.md")
        assert doc.title == "Handbook"

    def test_title_from_atx_h1_with_inline_markup(self) -> None:
        doc = load_document(b"Intro line.\n\n# The `PTO` Policy\n\nText.\n", "x.md")
        assert doc.title == "The PTO Policy"

    def test_filename_is_the_last_resort_title(self) -> None:
        doc = load_document(b"No heading here.\n\n## Only a subsection\n\nText.", "remote_work-policy.md")
        assert doc.title == "remote work policy"

    def test_bom_and_crlf(self) -> None:
        data = "\ufeff# Café Rules\r\n\r\nCoffee is free.\r\n".encode()
        doc = load_document(data, "cafe.markdown")
        assert doc.title == "Café Rules"
        assert "\r" not in doc.text
        assert not doc.text.startswith("\ufeff")
        assert doc.text[doc.headings[0].start : doc.headings[0].end].startswith("# Café Rules")


# --- Plain text -------------------------------------------------------------------------------

REMOTE_TXT = """\
Remote Work Policy

Purpose
=======

Why we allow remote work.

Eligibility
-----------

Employees after probation.

SECURITY REQUIREMENTS
Always use the VPN.

A normal sentence that is not a heading.
"""


class TestPlainText:
    def test_text_and_first_line_title(self) -> None:
        doc = load_document(REMOTE_TXT.encode(), "remote.txt")
        assert doc.filetype == "text"
        assert doc.title == "Remote Work Policy"
        assert doc.text == REMOTE_TXT

    def test_underlined_and_capital_headings(self) -> None:
        doc = load_document(REMOTE_TXT.encode(), "remote.txt")
        assert [(h.level, h.text) for h in doc.headings] == [
            (1, "Purpose"),
            (2, "Eligibility"),
            (2, "Security Requirements"),
        ]
        assert heading_slices(doc) == [
            "Purpose\n=======",
            "Eligibility\n-----------",
            "SECURITY REQUIREMENTS",
        ]
        assert all("normal sentence" not in h.text for h in doc.headings)

    def test_long_first_line_falls_back_to_filename(self) -> None:
        data = ("word " * 40 + "\n\nMore text.\n").encode()
        doc = load_document(data, "meeting-notes_2024.text")
        assert doc.title == "meeting notes 2024"

    def test_crlf_and_bom_decode(self) -> None:
        data = b"\xef\xbb\xbfTitle line\r\nsecond line\r\n\r\nthird\r"
        doc = load_document(data, "notes.txt")
        assert doc.text == "Title line\nsecond line\n\nthird\n"
        assert doc.title == "Title line"

    def test_utf16_with_bom_decodes(self) -> None:
        assert decode_text("Grüße\r\nzwei".encode("utf-16")) == "Grüße\nzwei"


# --- HTML -------------------------------------------------------------------------------------

PAGE_HTML = b"""<!doctype html>
<html><head><title>Expenses - Intranet</title>
<style>.banner { color: red } /* STYLEMARK */</style>
<script>var SCRIPTMARK = 1;</script></head>
<body>
<header class="site"><p>HEADERMARK Intranet banner</p></header>
<nav><a href="/">NAVMARK Home</a> <a href="/about">About</a></nav>
<div class="navheader">NAVHEADERMARK Prev | Next</div>
<div class="toc">TOCMARK Table of contents</div>
<main>
<article>
<header><p>Published 2024 by the ARTICLEHEADER finance team</p></header>
<h1>Expense   Policy</h1>
<p>Meals are   reimbursed up to <b>50 euros</b> per day.</p>
<aside>ASIDEMARK related links</aside>
<h2>Travel</h2>
<p>Book trains through the portal.</p>
<h3>Rail <code>first</code> class</h3>
<ul><li>Trips over four hours</li><li>Night trains</li></ul>
<table><tr><th>Grade</th><td>Daily limit</td></tr><tr><td>Director</td><td>80 euros</td></tr></table>
<pre>receipts --scan  --upload</pre>
<noscript>NOSCRIPTMARK enable JavaScript</noscript>
<!-- COMMENTMARK -->
</article>
</main>
<div class="navfooter">NAVFOOTERMARK Prev | Home | Next</div>
<footer><p>FOOTERMARK Copyright 2025</p></footer>
<script>SCRIPT2MARK()</script>
</body></html>"""

DOCBOOK_HTML = b"""<html><head><title>Chapter 3. Backups</title></head><body>
<div class="navheader"><table><tr><th>NAVHEADERMARK Chapter 3</th></tr>
<tr><td><a>Prev</a></td><td><a>Next</a></td></tr></table><hr></div>
<div class="chapter"><div class="titlepage"><h2 class="title">Chapter 3. Backups</h2></div>
<div class="toc"><p><b>TOCMARK Table of Contents</b></p><dl><dt>3.1 Schedule</dt></dl></div>
<div class="section"><h3>3.1 Schedule</h3><p>Nightly backups run at 02:00 UTC.</p></div>
<div class="sidebar">SIDEBARMARK</div>
<div role="navigation">ROLENAVMARK</div>
</div>
<div class="navfooter"><hr><table><tr><td>NAVFOOTERMARK Prev</td></tr></table></div>
</body></html>"""

BOILERPLATE_MARKS = (
    "HEADERMARK", "NAVMARK", "NAVHEADERMARK", "TOCMARK", "ASIDEMARK", "NOSCRIPTMARK",
    "COMMENTMARK", "NAVFOOTERMARK", "FOOTERMARK", "SCRIPTMARK", "SCRIPT2MARK", "STYLEMARK",
    "SIDEBARMARK", "ROLENAVMARK", "Intranet banner", "color: red",
)  # fmt: skip


class TestHtml:
    @pytest.mark.parametrize("page", [PAGE_HTML, DOCBOOK_HTML], ids=["main", "docbook"])
    def test_boilerplate_dropped(self, page: bytes) -> None:
        doc = load_document(page, "page.html")
        assert doc.filetype == "html"
        for mark in BOILERPLATE_MARKS:
            assert mark not in doc.text, mark
        assert "\x02" not in doc.text and "\x03" not in doc.text and "\x04" not in doc.text

    def test_content_kept_and_whitespace_collapsed(self) -> None:
        doc = load_document(PAGE_HTML, "page.html")
        assert "Meals are reimbursed up to 50 euros per day." in doc.text
        assert "Book trains through the portal." in doc.text
        assert "Trips over four hours" in doc.text and "Night trains" in doc.text
        assert "Director" in doc.text and "80 euros" in doc.text
        assert "receipts --scan  --upload" in doc.text  # <pre> keeps its spacing

    def test_header_inside_article_is_content(self) -> None:
        doc = load_document(PAGE_HTML, "page.html")
        assert "Published 2024 by the ARTICLEHEADER finance team" in doc.text

    def test_headings_with_levels_and_offsets(self) -> None:
        doc = load_document(PAGE_HTML, "page.html")
        assert [(h.level, h.text) for h in doc.headings] == [
            (1, "Expense Policy"),
            (2, "Travel"),
            (3, "Rail first class"),
        ]
        assert heading_slices(doc) == ["Expense Policy", "Travel", "Rail first class"]

    def test_title_from_h1(self) -> None:
        assert load_document(PAGE_HTML, "page.html").title == "Expense Policy"

    def test_docbook_page(self) -> None:
        doc = load_document(DOCBOOK_HTML, "ch03.html")
        assert "Nightly backups run at 02:00 UTC." in doc.text
        assert [(h.level, h.text) for h in doc.headings] == [
            (2, "Chapter 3. Backups"),
            (3, "3.1 Schedule"),
        ]
        assert_headings_in_text(doc)
        assert doc.title == "Chapter 3. Backups"  # no h1: the <title>

    def test_title_from_title_tag_then_filename(self) -> None:
        with_title = b"<html><head><title>Only Title</title></head><body><p>Body.</p></body></html>"
        assert load_document(with_title, "a.html").title == "Only Title"
        assert load_document(b"<p>Body text.</p>", "my-page_name.htm").title == "my page name"

    def test_page_level_header_and_footer_dropped_without_main(self) -> None:
        page = (
            b"<html><body><header>SITEHEADER</header><article><header><h1>Art</h1>"
            b"<p>By KEEPME</p></header><p>Content.</p><footer>ARTFOOTER kept</footer></article>"
            b"<footer>SITEFOOTER</footer></body></html>"
        )
        doc = load_document(page, "a.html")
        assert "SITEHEADER" not in doc.text and "SITEFOOTER" not in doc.text
        assert "KEEPME" in doc.text and "ARTFOOTER kept" in doc.text
        assert doc.title == "Art"


# --- PDF --------------------------------------------------------------------------------------


TRAVEL_PAGES = [
    ["Travel Guide", "This guide covers business travel."],
    ["Booking flights happens through the travel portal."],
    ["The per diem for Berlin is 42 euros per day."],
]


class TestPdf:
    PAGES = TRAVEL_PAGES

    def test_pages_counted_from_one(self) -> None:
        doc = load_document(build_pdf(self.PAGES, title="Travel Policy"), "travel.pdf")
        assert doc.filetype == "pdf"
        assert [p.page for p in doc.pages] == [1, 2, 3]
        for span, lines in zip(doc.pages, self.PAGES, strict=True):
            assert lines[-1] in doc.text[span.start : span.end]
        starts = [p.start for p in doc.pages]
        assert starts == sorted(starts) and doc.pages[0].start == 0
        assert doc.pages[-1].end == len(doc.text)

    def test_page_at_a_fact_on_page_three(self) -> None:
        doc = load_document(build_pdf(self.PAGES), "travel.pdf")
        offset = doc.text.index("42 euros")
        assert doc.page_at(offset) == 3
        assert doc.page_at(doc.text.index("travel portal")) == 2
        assert doc.page_at(0) == 1
        assert doc.page_at(len(doc.text) + 10) == 3

    def test_blank_page_keeps_physical_numbering(self) -> None:
        pages = [["First page text."], [], ["Third page holds the fact."]]
        doc = load_document(build_pdf(pages), "blank-middle.pdf")
        assert doc.page_at(doc.text.index("the fact")) == 3
        assert [p.page for p in doc.pages] == [1, 2, 3]

    def test_title_from_metadata(self) -> None:
        doc = load_document(build_pdf(self.PAGES, title="Travel Policy"), "travel.pdf")
        assert doc.title == "Travel Policy"

    def test_title_from_first_line_then_filename(self) -> None:
        assert load_document(build_pdf(self.PAGES), "travel.pdf").title == "Travel Guide"
        long_line = [["x" * 30 + " " + "word " * 30]]
        doc = load_document(build_pdf(long_line, font_size=4), "annual_report-2024.pdf")
        assert doc.title == "annual report 2024"

    def test_outline_headings(self) -> None:
        pages = [
            ["# Chapter One", "Intro text.", "## Details", "More text here."],
            ["# Chapter Two", "Second chapter text."],
        ]
        doc = load_document(build_pdf(pages, outline=True), "chapters.pdf")
        assert [(h.level, h.text) for h in doc.headings] == [
            (1, "Chapter One"),
            (2, "Details"),
            (1, "Chapter Two"),
        ]
        assert heading_slices(doc) == ["Chapter One", "Details", "Chapter Two"]
        assert doc.page_at(doc.headings[2].start) == 2

    def test_owner_password_only_opens(self) -> None:
        pdf = FPDF()
        pdf.set_encryption(owner_password="owner-only")
        pdf.add_page()
        pdf.set_font("Helvetica", size=12)
        pdf.cell(text="Readable without a password.")
        doc = load_document(bytes(pdf.output()), "open.pdf")
        assert "Readable without a password." in doc.text

    def test_pdf_without_text_is_empty(self) -> None:
        with pytest.raises(EmptyDocument, match="no extractable text"):
            load_document(build_pdf([[], []]), "scan.pdf")


# --- DOCX -------------------------------------------------------------------------------------


class TestDocx:
    def test_headings_from_styles(self) -> None:
        doc = load_document(build_handbook_docx(), "handbook.docx")
        assert doc.filetype == "docx"
        assert [(h.level, h.text) for h in doc.headings] == [
            (1, "Employee Handbook"),
            (1, "Leave"),
            (2, "Vacation"),
            (3, "Carry-over"),
            (1, "Expenses"),
        ]
        assert heading_slices(doc) == [h.text for h in doc.headings]

    def test_title_style_is_the_title(self) -> None:
        assert load_document(build_handbook_docx(), "handbook.docx").title == "Employee Handbook"

    def test_core_title_wins(self) -> None:
        doc = load_document(build_handbook_docx(core_title="HB 2025"), "handbook.docx")
        assert doc.title == "HB 2025"

    def test_first_heading_then_filename(self) -> None:
        document = docx.Document()
        document.add_paragraph("Some text first.")
        document.add_heading("Only Heading", level=2)
        assert load_document(docx_bytes(document), "x.docx").title == "Only Heading"
        plain = docx.Document()
        plain.add_paragraph("Just a paragraph.")
        assert load_document(docx_bytes(plain), "travel_rules-v2.docx").title == "travel rules v2"

    def test_table_cells_in_body_order(self) -> None:
        doc = load_document(build_handbook_docx(), "handbook.docx")
        for cell in ("Grade", "Days", "Senior engineer", "30"):
            assert cell in doc.text
        assert "Senior engineer | 30" in doc.text
        order = [doc.text.index(s) for s in ("25 days", "Senior engineer", "Carry-over", "five")]
        assert order == sorted(order)

    def test_empty_docx_is_empty(self) -> None:
        document = docx.Document()
        document.add_paragraph("   ")
        with pytest.raises(EmptyDocument):
            load_document(docx_bytes(document), "blank.docx")


# --- bad input --------------------------------------------------------------------------------


def _zip_without_document_xml() -> bytes:
    source = zipfile.ZipFile(io.BytesIO(build_handbook_docx()))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as target:
        for info in source.infolist():
            if info.filename != "word/document.xml":
                target.writestr(info, source.read(info))
    return buffer.getvalue()


def _plain_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("notes.txt", "not a word document")
    return buffer.getvalue()


def _encrypted_pdf() -> bytes:
    pdf = FPDF()
    pdf.set_encryption(owner_password="owner", user_password="secret")
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.cell(text="Top secret salary table.")
    return bytes(pdf.output())


PNG_BYTES = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10" + bytes(range(256)) * 4


class TestBadInput:
    @pytest.mark.parametrize(
        "data",
        [
            random.Random(0).randbytes(4096),
            b"%PDF-1.7\n" + random.Random(1).randbytes(2048),
            build_pdf([["Truncated document text."]] * 3)[:900],
            b"%PDF-1.4\n%%EOF\n",
        ],
        ids=["random", "pdf-header-random", "truncated", "no-xref"],
    )
    def test_corrupt_pdf(self, data: bytes) -> None:
        with pytest.raises(UnreadableDocument, match="corrupt PDF"):
            load_document(data, "broken.pdf")

    def test_encrypted_pdf(self) -> None:
        with pytest.raises(UnreadableDocument, match="encrypted") as info:
            load_document(_encrypted_pdf(), "locked.pdf")
        assert "password" in str(info.value)

    @pytest.mark.parametrize("name", ["image.txt", "image.md", "image.html", "image.text"])
    def test_binary_with_text_suffix(self, name: str) -> None:
        with pytest.raises(UnreadableDocument, match="binary"):
            load_document(PNG_BYTES, name)

    def test_control_characters_are_binary(self) -> None:
        data = bytes(range(1, 9)) * 20 + b"some text"
        with pytest.raises(UnreadableDocument, match="binary"):
            load_document(data, "weird.txt")

    @pytest.mark.parametrize("name", ["a.txt", "a.md", "a.html", "a.pdf", "a.docx"])
    @pytest.mark.parametrize("data", [b"", b" \n\t\r\n  \n"], ids=["empty", "whitespace"])
    def test_empty_files(self, data: bytes, name: str) -> None:
        with pytest.raises(EmptyDocument, match="empty"):
            load_document(data, name)

    @pytest.mark.parametrize(
        ("data", "name"),
        [
            (b"---\ntitle: Only front matter\n---\n", "fm.md"),
            (b"<html><body><nav>only navigation</nav><script>x()</script></body></html>", "n.html"),
        ],
    )
    def test_no_text_after_parsing(self, data: bytes, name: str) -> None:
        with pytest.raises(EmptyDocument, match="no text"):
            load_document(data, name)

    @pytest.mark.parametrize("name", ["menu.txt", "menu.md"])
    def test_not_utf8(self, name: str) -> None:
        with pytest.raises(UnreadableDocument, match="not UTF-8") as info:
            load_document("Menu: café crème".encode("latin-1"), name)
        assert "0xe9" in str(info.value)

    def test_not_utf8_short(self) -> None:
        with pytest.raises(UnreadableDocument, match="not UTF-8"):
            load_document(b"caf\xe9", "cafe.txt")

    @pytest.mark.parametrize(
        "data",
        [b"this is not a zip archive at all", _plain_zip(), _zip_without_document_xml()],
        ids=["not-zip", "zip-without-word", "zip-without-document-xml"],
    )
    def test_corrupt_docx(self, data: bytes) -> None:
        with pytest.raises(UnreadableDocument, match="corrupt DOCX"):
            load_document(data, "broken.docx")

    def test_truncated_docx(self) -> None:
        data = build_handbook_docx()
        with pytest.raises(UnreadableDocument, match="corrupt DOCX"):
            load_document(data[: len(data) // 2], "half.docx")

    @pytest.mark.parametrize("name", ["sheet.xlsx", "slides.pptx", "README", "archive.tar.gz"])
    def test_unsupported_suffix(self, name: str) -> None:
        with pytest.raises(UnsupportedFormat, match="unsupported file type"):
            load_document(b"some content", name)
        assert not is_supported(name)

    def test_suffix_is_case_insensitive(self) -> None:
        assert is_supported("NOTES.MD") and is_supported("page.HTM")
        assert load_document(b"# Upper\n\ntext", "NOTES.MD").title == "Upper"

    def test_error_classes(self) -> None:
        # Skips (nothing to read) and failures (could not read) are told apart by class.
        assert issubclass(EmptyDocument, SkippedFile)
        assert issubclass(UnsupportedFormat, SkippedFile)
        assert issubclass(UnreadableDocument, IngestError)
        assert not issubclass(UnreadableDocument, SkippedFile)


# --- the real corpus --------------------------------------------------------------------------


def corpus_files() -> list[Path]:
    if not CORPUS.is_dir():
        return []
    return sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.suffix.lower() in LOADERS)


CORPUS_FILES = corpus_files()


def html_markers() -> list[str]:
    """Markers listed in docs/corpus.md under "HTML boilerplate markers", read loosely: the
    backquoted strings of its list items (else the items themselves, else any backquoted
    string), without tag names and paths, which say where a marker is rather than what it is."""
    if not CORPUS_DOC.is_file():
        return []
    text = CORPUS_DOC.read_text(encoding="utf-8")
    found = re.search(r"html boilerplate markers[^\n]*\n(.*?)(?=^\s*#|\Z)", text, re.I | re.S | re.M)
    if not found:
        return []
    body = found.group(1)
    items = re.findall(r"^\s*[-*+]\s+(.+)$", body, re.M)
    markers = (
        [m for item in items for m in re.findall(r"`([^`\n]+)`", item)]
        or items
        or re.findall(r"`([^`\n]+)`", body)
    )
    markers = [m.strip().strip("\"'").strip() for m in markers]
    place = re.compile(r"<[^>]*>|[\w./-]*/|[\w./-]+\.html?")
    return sorted({m for m in markers if m and not place.fullmatch(m)})


@pytest.mark.parametrize(
    "path",
    CORPUS_FILES or [None],
    ids=[str(p.relative_to(CORPUS)) for p in CORPUS_FILES] or ["none"],
)
def test_corpus_file_loads(path: Path | None) -> None:
    if path is None:
        pytest.skip("corpus/ holds no supported files yet")
    doc = load_document(path.read_bytes(), path.name)
    assert doc.title.strip()
    assert doc.text.strip()
    assert_headings_in_text(doc)
    if path.suffix.lower() in (".html", ".htm"):
        markers = html_markers()
        if not markers:
            pytest.skip("docs/corpus.md lists no HTML boilerplate markers")
        leaked = [m for m in markers if m in doc.text]
        assert not leaked, f"boilerplate markers in {path.name}: {leaked}"


PDF_FILES = [p for p in CORPUS_FILES if p.suffix.lower() == ".pdf"]


@pytest.mark.parametrize(
    "path",
    PDF_FILES or [None],
    ids=[str(p.relative_to(CORPUS)) for p in PDF_FILES] or ["none"],
)
def test_corpus_pdf_pages_and_outline(path: Path | None) -> None:
    """The corpus PDFs carry a "Page N of M" footer: it must sit on physical page N."""
    if path is None:
        pytest.skip("corpus/ holds no PDF yet")
    doc = load_document(path.read_bytes(), path.name)
    assert [p.page for p in doc.pages] == list(range(1, len(doc.pages) + 1))
    for footer in re.finditer(r"Page (\d+) of (\d+)", doc.text):
        assert doc.page_at(footer.start()) == int(footer.group(1)), footer.group(0)
        assert int(footer.group(2)) == len(doc.pages)
    assert doc.headings, "corpus PDFs have an outline"
    levels = [h.level for h in doc.headings]
    assert min(levels) == 1


MARKDOWN_FILES = [p for p in CORPUS_FILES if p.suffix.lower() in (".md", ".markdown")]


@pytest.mark.parametrize(
    "path",
    MARKDOWN_FILES or [None],
    ids=[str(p.relative_to(CORPUS)) for p in MARKDOWN_FILES] or ["none"],
)
def test_corpus_markdown_code_comments_are_no_headings(path: Path | None) -> None:
    if path is None:
        pytest.skip("corpus/ holds no Markdown yet")
    doc = load_document(path.read_bytes(), path.name)
    fences = [(m.start(), m.end()) for m in re.finditer(r"^(```|~~~).*?^\1[ \t]*$", doc.text, re.M | re.S)]
    for h in doc.headings:
        assert not any(a < h.start < b for a, b in fences), h
