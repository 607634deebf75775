"""Turn a file's bytes into a :class:`LoadedDocument`: text, title, headings and pages.

One loader per format, chosen by suffix. Parsers are imported inside their loader so that importing
``ingest`` stays cheap. Every failure becomes an :class:`IngestError` whose message says why.
"""

from __future__ import annotations

import io
import logging
import re
import zipfile
from collections.abc import Callable
from pathlib import PurePath

from ingest.errors import EmptyDocument, FileTooLarge, UnreadableDocument, UnsupportedFormat
from ingest.types import Heading, LoadedDocument, PageSpan

Loader = Callable[[bytes, str], LoadedDocument]

# A DOCX is a zip: refuse one whose parts expand past this, before any XML is parsed.
MAX_UNZIPPED_BYTES = 512 * 1024 * 1024
# A PDF's page tree may list one small page a million times: past this many pages it is skipped, as
# reading each page costs about 1.5 ms however little it holds (a 5000-page file takes 8 s to read).
MAX_PDF_PAGES = 2000
# Text files are sniffed for NUL bytes in this many leading bytes to catch binaries with a text suffix.
SNIFF_BYTES = 8192


def load_document(data: bytes, filename: str) -> LoadedDocument:
    """Parse ``data`` as the format its ``filename`` suffix names.

    :raises UnsupportedFormat: no loader for the suffix.
    :raises EmptyDocument: the file holds no text.
    :raises UnreadableDocument: the file is corrupt, encrypted, binary or not UTF-8.
    """
    loader = LOADERS.get(PurePath(filename).suffix.lower())
    if loader is None:
        raise UnsupportedFormat(f"unsupported file type {PurePath(filename).suffix or '(none)'}")
    if not data.strip():
        raise EmptyDocument("empty file")
    doc = loader(data, filename)
    if not doc.text.strip():
        raise EmptyDocument("no text found in the file")
    doc.superseded = is_superseded(doc.text)
    return doc


# A document that says near its top that it was superseded or replaced is out of date; a current one
# may say it *supersedes* another, which this does not match.
_SUPERSEDED = re.compile(
    r"\bsuperseded\b"
    r"|\b(?:was|has been|is) (?:replaced|withdrawn|retired)\b"
    r"|\bno longer (?:in effect|valid)\b",
    re.I,
)
SUPERSEDED_WINDOW = 600


def is_superseded(text: str) -> bool:
    """Whether the document declares itself out of date in its opening lines."""
    return bool(_SUPERSEDED.search(text[:SUPERSEDED_WINDOW]))


def is_supported(filename: str) -> bool:
    return PurePath(filename).suffix.lower() in LOADERS


def _title_from_name(filename: str) -> str:
    return re.sub(r"[-_]+", " ", PurePath(filename).stem).strip() or filename


def decode_text(data: bytes) -> str:
    """Decode a text file as UTF-8 (a BOM is allowed), with newlines normalised to ``\\n``.

    :raises UnreadableDocument: NUL bytes (a binary file) or bytes that are not UTF-8.
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise UnreadableDocument(f"invalid UTF-16 text: {exc.reason}") from exc
    else:
        if b"\x00" in data[:SNIFF_BYTES]:
            raise UnreadableDocument("binary content (NUL bytes) in a text file")
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise UnreadableDocument(
                f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                "convert the file to UTF-8"
            ) from exc
    sample = text[:SNIFF_BYTES]
    controls = sum(1 for ch in sample if ord(ch) < 32 and ch not in "\t\n\r\f")
    if controls > max(2, len(sample) // 100):
        raise UnreadableDocument("binary content (control characters) in a text file")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _line_starts(text: str) -> list[int]:
    starts = [0]
    starts.extend(m.end() for m in re.finditer("\n", text))
    return starts


# --- Markdown ---------------------------------------------------------------------------------

_FRONT_MATTER = re.compile(r"\A---\n(.*?\n)---\n", re.S)


def _front_matter(text: str) -> tuple[dict[str, object], str]:
    match = _FRONT_MATTER.match(text)
    if not match:
        return {}, text
    import yaml

    try:
        meta = yaml.safe_load(match.group(1))
    except yaml.YAMLError:
        return {}, text
    return (meta if isinstance(meta, dict) else {}), text[match.end() :]


def load_markdown(data: bytes, filename: str) -> LoadedDocument:
    """Markdown: headings come from a CommonMark parse, so a ``#`` inside a code block is no heading."""
    from markdown_it import MarkdownIt

    meta, text = _front_matter(decode_text(data))
    tokens = MarkdownIt("commonmark").parse(text)
    starts = [*_line_starts(text), len(text)]
    headings: list[Heading] = []
    for i, token in enumerate(tokens):
        if token.type != "heading_open" or token.map is None:
            continue
        inline = tokens[i + 1]
        title = "".join(
            child.content for child in (inline.children or []) if child.type in ("text", "code_inline")
        ).strip()
        first, last = token.map
        headings.append(Heading(starts[first], starts[min(last, len(starts) - 1)], int(token.tag[1:]), title))
    h1 = next((h.text for h in headings if h.level == 1 and h.text), None)
    title = str(meta.get("title") or h1 or _title_from_name(filename))
    raw_tags = meta.get("tags") or ()
    listed = (
        [raw_tags] if isinstance(raw_tags, str) else raw_tags if isinstance(raw_tags, list | tuple) else []
    )
    tags = tuple(str(t).strip() for t in listed)
    return LoadedDocument(text=text, title=title, filetype="markdown", headings=headings, tags=tags)


# --- Plain text -------------------------------------------------------------------------------

# Exported .txt documents mark sections by underlining (===, ---) or by a short line in capitals.
_UNDERLINED = re.compile(r"^(?P<title>[^\n]*\S[^\n]*)\n(?P<rule>={3,}|-{3,})[ \t]*$", re.M)
_CAPS_LINE = re.compile(r"^(?P<title>[A-Z0-9][A-Z0-9 &/,.:()'-]{2,80})[ \t]*$", re.M)


def load_text(data: bytes, filename: str) -> LoadedDocument:
    text = decode_text(data)
    headings = [
        Heading(m.start(), m.end(), 1 if m.group("rule")[0] == "=" else 2, m.group("title").strip())
        for m in _UNDERLINED.finditer(text)
    ]
    taken = [(h.start, h.end) for h in headings]
    for m in _CAPS_LINE.finditer(text):
        if any(a <= m.start() < b for a, b in taken) or not re.search("[A-Z]{2}", m.group("title")):
            continue
        headings.append(Heading(m.start(), m.end(), 2, m.group("title").strip().title()))
    headings.sort(key=lambda h: h.start)
    first_line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    title = first_line if 0 < len(first_line) <= 120 else _title_from_name(filename)
    return LoadedDocument(text=text, title=title, filetype="text", headings=headings)


# --- HTML -------------------------------------------------------------------------------------

_DROP_TAGS = (
    "script", "style", "noscript", "template", "nav", "aside", "form", "iframe", "svg",
    "button", "select", "input", "head", "object", "embed", "canvas",
)  # fmt: skip
_DROP_ROLES = {"navigation", "banner", "contentinfo", "search", "complementary"}
# Classes that generated manuals (DocBook, Sphinx, Javadoc) give to navigation and tables of contents.
_NAV_CLASS = re.compile(
    r"^(nav\w*|navigation|breadcrumbs?|toc|sidebar\w*|skip-?link|related|sphinxsidebar|footer)$",
    re.I,
)
_BLOCK_TAGS = {
    "p", "div", "section", "article", "main", "li", "ul", "ol", "dl", "dt", "dd", "table", "tr",
    "pre", "blockquote", "br", "hr", "figure", "figcaption", "caption", "address", "details",
    "summary", "header", "footer", "tbody", "thead",
}  # fmt: skip
_HEADING_TAGS = ("h1", "h2", "h3", "h4", "h5", "h6")
_MARK_OPEN, _MARK_MID, _MARK_CLOSE = "\x02", "\x03", "\x04"


def load_html(data: bytes, filename: str) -> LoadedDocument:
    """HTML: the page's content only; navigation, banners, footers, scripts and styles are dropped."""
    import warnings

    from bs4 import BeautifulSoup, XMLParsedAsHTMLWarning
    from bs4.element import Comment, NavigableString, Tag

    # Generated manuals are often XHTML; the lenient HTML parser reads them well.
    warnings.filterwarnings("ignore", category=XMLParsedAsHTMLWarning)
    if b"\x00" in data[:SNIFF_BYTES]:
        raise UnreadableDocument("binary content (NUL bytes) in an HTML file")
    soup = BeautifulSoup(data, "lxml")
    page_title = soup.title.get_text(" ", strip=True) if soup.title else ""

    for comment in soup.find_all(string=lambda s: isinstance(s, Comment)):
        comment.extract()
    for tag in soup.find_all(_DROP_TAGS):
        tag.decompose()
    for tag in soup.find_all(True):
        if tag.decomposed or not isinstance(tag, Tag) or tag.attrs is None:
            continue
        role = str(tag.get("role") or "").lower()
        classes: list[str] = list(tag.get("class") or [])
        if role in _DROP_ROLES or any(_NAV_CLASS.match(c) for c in classes):
            tag.decompose()
    # A page-level <header>/<footer> is the site's banner; inside <article>/<main> it is content.
    for tag in soup.find_all(["header", "footer"]):
        if not tag.find_parent(["article", "main"]):
            tag.decompose()

    root = soup.find("main") or soup.find("article") or soup.body or soup
    for text_node in root.find_all(string=True):
        if not text_node.find_parent("pre"):
            text_node.replace_with(NavigableString(re.sub(r"\s+", " ", str(text_node))))
    h1_text = ""
    for heading in root.find_all(_HEADING_TAGS):
        text = heading.get_text(" ", strip=True)
        if heading.name == "h1" and not h1_text:
            h1_text = text
        heading.replace_with(
            NavigableString(f"\n\n{_MARK_OPEN}{heading.name[1]}{_MARK_MID}{text}{_MARK_CLOSE}\n\n")
        )
    for tag in root.find_all(list(_BLOCK_TAGS)):
        tag.insert_before("\n")
        tag.insert_after("\n")
    for cell in root.find_all(["td", "th"]):
        cell.insert_after(" ")

    raw = root.get_text()
    raw = "\n".join(line.strip() for line in raw.split("\n"))
    raw = re.sub(r"\n{3,}", "\n\n", raw).strip()

    text_parts: list[str] = []
    headings: list[Heading] = []
    pos = 0
    length = 0
    for match in re.finditer(f"{_MARK_OPEN}(\\d){_MARK_MID}(.*?){_MARK_CLOSE}", raw):
        text_parts.append(raw[pos : match.start()])
        length += match.start() - pos
        heading_text = match.group(2)
        headings.append(Heading(length, length + len(heading_text), int(match.group(1)), heading_text))
        text_parts.append(heading_text)
        length += len(heading_text)
        pos = match.end()
    text_parts.append(raw[pos:])
    text = "".join(text_parts)
    title = h1_text or page_title or _title_from_name(filename)
    return LoadedDocument(text=text, title=title, filetype="html", headings=headings)


# --- PDF --------------------------------------------------------------------------------------


def load_pdf(data: bytes, filename: str) -> LoadedDocument:
    """PDF: text per physical page (counted from 1), headings from the outline when there is one."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise UnreadableDocument("encrypted PDF: remove the password and ingest it again")
        if len(reader.pages) > MAX_PDF_PAGES:
            raise FileTooLarge(f"PDF has {len(reader.pages)} pages, over the {MAX_PDF_PAGES}-page limit")
        page_texts = [(page.extract_text() or "").strip() for page in reader.pages]
        outline = _pdf_outline(reader)
        meta_title = (reader.metadata.title if reader.metadata else None) or ""
    except (UnreadableDocument, FileTooLarge):
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise UnreadableDocument(f"corrupt PDF: {exc}") from exc
    except Exception as exc:  # pypdf raises bare errors on some damaged files
        if "crypt" in str(exc).lower():
            raise UnreadableDocument(f"encrypted PDF: {exc}") from exc
        raise UnreadableDocument(f"corrupt PDF: {type(exc).__name__}: {exc}") from exc

    if not any(page_texts):
        raise EmptyDocument("no extractable text in the PDF (a scan? run OCR on it first)")
    parts: list[str] = []
    pages: list[PageSpan] = []
    offset = 0
    for number, page_text in enumerate(page_texts, start=1):
        if parts:
            parts.append("\n\n")
            offset += 2
        parts.append(page_text)
        pages.append(PageSpan(offset, offset + len(page_text), number))
        offset += len(page_text)
    text = "".join(parts)

    headings: list[Heading] = []
    for level, heading_title, page_index in outline:
        span = pages[page_index]
        page_text = text[span.start : span.end]
        found = page_text.find(heading_title)
        start = span.start + (found if found >= 0 else 0)
        end = start + len(heading_title) if found >= 0 else start
        headings.append(Heading(start, end, level, heading_title))
    headings.sort(key=lambda h: h.start)
    first_line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    title = meta_title.strip() or (first_line if len(first_line) <= 120 else "")
    return LoadedDocument(
        text=text,
        title=title or _title_from_name(filename),
        filetype="pdf",
        headings=headings,
        pages=pages,
    )


def _pdf_outline(reader: object) -> list[tuple[int, str, int]]:
    """Flatten the PDF outline into ``(level, title, page index)``."""
    from pypdf import PdfReader

    assert isinstance(reader, PdfReader)
    found: list[tuple[int, str, int]] = []

    def walk(items: list[object], level: int) -> None:
        for item in items:
            if isinstance(item, list):
                walk(item, level + 1)
                continue
            try:
                page_index = reader.get_destination_page_number(item)  # type: ignore[arg-type]
            except Exception:  # an outline entry pointing nowhere is not worth failing the file
                continue
            title = str(getattr(item, "title", "") or "").strip()
            if title and page_index is not None and 0 <= page_index < len(reader.pages):
                found.append((level, title, page_index))

    try:
        walk(list(reader.outline), 1)
    except Exception:
        return []
    return found


# --- DOCX -------------------------------------------------------------------------------------


def load_docx(data: bytes, filename: str) -> LoadedDocument:
    """DOCX: paragraphs and tables in body order; ``Heading N`` and ``Title`` styles become headings."""
    import docx
    from docx.table import Table

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unzipped = sum(info.file_size for info in archive.infolist())
    except zipfile.BadZipFile as exc:
        raise UnreadableDocument(f"corrupt DOCX (not a zip archive): {exc}") from exc
    if unzipped > MAX_UNZIPPED_BYTES:
        raise UnreadableDocument(
            f"DOCX expands to {unzipped / 2**20:.0f} MB, over {MAX_UNZIPPED_BYTES // 2**20} MB"
        )
    try:
        document = docx.Document(io.BytesIO(data))
        blocks = list(document.iter_inner_content())
        core_title = document.core_properties.title or ""
    except Exception as exc:  # python-docx raises KeyError, ValueError, lxml errors...
        raise UnreadableDocument(f"corrupt DOCX: {type(exc).__name__}: {exc}") from exc

    parts: list[str] = []
    headings: list[Heading] = []
    offset = 0
    style_title = ""
    for block in blocks:
        if isinstance(block, Table):
            rows = [" | ".join(cell.text.strip() for cell in row.cells) for row in block.rows]
            block_text = "\n".join(rows).strip()
            level = 0
        else:
            block_text = block.text.strip()
            style = (block.style.name if block.style is not None else "") or ""
            level = _docx_heading_level(style)
            if style == "Title" and not style_title:
                style_title = block_text
        if not block_text:
            continue
        if parts:
            parts.append("\n\n")
            offset += 2
        if level:
            headings.append(Heading(offset, offset + len(block_text), level, block_text))
        parts.append(block_text)
        offset += len(block_text)
    text = "".join(parts)
    first_heading = headings[0].text if headings else ""
    title = core_title.strip() or style_title or first_heading or _title_from_name(filename)
    return LoadedDocument(text=text, title=title, filetype="docx", headings=headings)


def _docx_heading_level(style: str) -> int:
    if style == "Title":
        return 1
    match = re.fullmatch(r"Heading (\d)", style)
    return int(match.group(1)) if match else 0


LOADERS: dict[str, Loader] = {
    ".md": load_markdown,
    ".markdown": load_markdown,
    ".txt": load_text,
    ".text": load_text,
    ".html": load_html,
    ".htm": load_html,
    ".pdf": load_pdf,
    ".docx": load_docx,
}
