#!/usr/bin/env python3
"""Regenerate the PDF and DOCX documents of the sample corpus.

The text of every binary document lives in ``corpus/.src/<path>.src.md`` (hidden, so ingest skips it) (a small
Markdown subset, see ``parse``). This script renders each source to the output
path listed in ``DOCUMENTS`` below, with fixed metadata and timestamps so that
repeated runs produce byte-identical files.

Usage (from the repository root or anywhere else):

    python corpus/make_binary_docs.py            # write all PDFs and DOCX files
    python corpus/make_binary_docs.py --check    # exit 1 if any output is stale

Requires ``fpdf2`` and ``python-docx``.

Source format
-------------
``%key: value`` lines at the top set metadata (author, subject, date).
``# Title`` is the document title. ``##``, ``###`` and ``####`` are headings of
level 1-3. ``- item`` and ``1. item`` are list items. Lines starting with ``|``
form a table (a ``|---|`` separator line is ignored; the first row is the
header). ``> text`` is a highlighted notice. Blank lines separate paragraphs.
``**bold**`` is the only inline markup.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import re
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

CORPUS_DIR = Path(__file__).resolve().parent
REPO_ROOT = CORPUS_DIR.parent
SRC_DIR = CORPUS_DIR / ".src"

COMPANY = "Kestrelmoor Analytics"

# (source under corpus/.src/, output under corpus/)
DOCUMENTS: list[tuple[str, str]] = [
    # PDF
    ("hr/employee-handbook.src.md", "hr/employee-handbook.pdf"),
    ("it-security/incident-response-plan.src.md", "it-security/incident-response-plan.pdf"),
    ("product/pricing-plans.src.md", "product/pricing-plans.pdf"),
    ("product/release-notes-4.1.src.md", "product/release-notes-4.1.pdf"),
    ("support/runbooks/sla-definitions.src.md", "support/runbooks/sla-definitions.pdf"),
    ("meetings/2025-06-11-postmortem-ingest-outage.src.md", "meetings/2025-06-11-postmortem-ingest-outage.pdf"),
    # DOCX
    ("hr/expense-travel-policy-2023.src.md", "hr/expense-travel-policy-2023.docx"),
    ("hr/expense-travel-policy-2025.src.md", "hr/expense-travel-policy-2025.docx"),
    ("hr/performance-review-process.src.md", "hr/performance-review-process.docx"),
    ("hr/onboarding-checklist.src.md", "hr/onboarding-checklist.docx"),
    ("it-security/access-review-procedure.src.md", "it-security/access-review-procedure.docx"),
    ("meetings/2025-04-16-security-review.src.md", "meetings/2025-04-16-security-review.docx"),
]


# --------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------

@dataclass
class Block:
    kind: str  # heading | para | ul | ol | table | notice
    text: str = ""
    level: int = 0
    items: list = field(default_factory=list)


@dataclass
class Doc:
    title: str
    meta: dict
    blocks: list


def parse(text: str) -> Doc:
    meta: dict[str, str] = {}
    title = None
    blocks: list[Block] = []
    para: list[str] = []

    def flush_para() -> None:
        if para:
            blocks.append(Block("para", " ".join(s.strip() for s in para)))
            para.clear()

    for raw in text.splitlines():
        line = raw.rstrip()
        if not line.strip():
            flush_para()
            continue
        m = re.match(r"^%(\w+):\s*(.*)$", line)
        if m and title is None and not blocks:
            meta[m.group(1)] = m.group(2)
            continue
        m = re.match(r"^(#{1,4})\s+(.*)$", line)
        if m:
            flush_para()
            level = len(m.group(1))
            if level == 1:
                if title is not None:
                    raise ValueError("only one '# ' title allowed")
                title = m.group(2).strip()
            else:
                blocks.append(Block("heading", m.group(2).strip(), level=level - 1))
            continue
        if line.startswith("|"):
            flush_para()
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if all(re.fullmatch(r":?-{3,}:?", c) for c in cells):
                continue
            if not blocks or blocks[-1].kind != "table":
                blocks.append(Block("table"))
            blocks[-1].items.append(cells)
            continue
        m = re.match(r"^- (.*)$", line)
        if m:
            flush_para()
            if not blocks or blocks[-1].kind != "ul":
                blocks.append(Block("ul"))
            blocks[-1].items.append(m.group(1).strip())
            continue
        m = re.match(r"^\d+\. (.*)$", line)
        if m:
            flush_para()
            if not blocks or blocks[-1].kind != "ol":
                blocks.append(Block("ol"))
            blocks[-1].items.append(m.group(1).strip())
            continue
        if line.startswith("> "):
            flush_para()
            blocks.append(Block("notice", line[2:].strip()))
            continue
        para.append(line)
    flush_para()
    if title is None:
        raise ValueError("missing '# ' title")
    return Doc(title, meta, blocks)


def doc_date(doc: Doc) -> dt.datetime:
    d = dt.date.fromisoformat(doc.meta.get("date", "2025-01-01"))
    return dt.datetime(d.year, d.month, d.day, 9, 0, 0, tzinfo=dt.timezone.utc)


def split_bold(text: str) -> list[tuple[str, bool]]:
    parts = re.split(r"(\*\*[^*]+\*\*)", text)
    out = []
    for p in parts:
        if not p:
            continue
        if p.startswith("**") and p.endswith("**"):
            out.append((p[2:-2], True))
        else:
            out.append((p, False))
    return out


# --------------------------------------------------------------------------
# PDF
# --------------------------------------------------------------------------

def render_pdf(doc: Doc, rel_out: str) -> bytes:
    from fpdf import FPDF
    from fpdf.fonts import FontFace

    for b in [doc.title, *[blk.text for blk in doc.blocks],
              *[str(i) for blk in doc.blocks for i in blk.items]]:
        b.encode("latin-1")  # core fonts only hold latin-1: fail loudly

    class PDF(FPDF):
        def header(self) -> None:
            if self.page_no() == 1:
                return
            self.set_font("Helvetica", "I", 8)
            self.set_text_color(110, 110, 110)
            running = doc.title if COMPANY in doc.title else f"{COMPANY} - {doc.title}"
            self.cell(0, 6, running, align="R")
            self.ln(9)
            self.set_text_color(0, 0, 0)

        def footer(self) -> None:
            self.set_y(-13)
            self.set_font("Helvetica", "", 8)
            self.set_text_color(110, 110, 110)
            self.cell(0, 6, f"Page {self.page_no()} of {{nb}}", align="C")
            self.set_text_color(0, 0, 0)

    pdf = PDF(format="Letter")
    pdf.set_margins(22, 20, 22)
    pdf.set_auto_page_break(True, margin=20)
    pdf.alias_nb_pages()
    pdf.set_title(doc.title)
    pdf.set_author(doc.meta.get("author", COMPANY))
    pdf.set_subject(doc.meta.get("subject", doc.title))
    pdf.set_creator(f"{COMPANY} document pipeline (make_binary_docs.py)")
    pdf.set_producer("fpdf2")
    pdf.set_keywords(COMPANY)
    pdf.set_lang("en-US")
    pdf.set_creation_date(doc_date(doc))
    pdf.add_page()

    pdf.set_font("Helvetica", "B", 19)
    pdf.multi_cell(0, 9, doc.title, new_x="LMARGIN", new_y="NEXT")
    pdf.set_draw_color(15, 61, 76)
    pdf.set_line_width(0.6)
    pdf.line(pdf.l_margin, pdf.get_y() + 1, pdf.w - pdf.r_margin, pdf.get_y() + 1)
    pdf.ln(5)

    heading_fonts = {1: ("B", 14.5, 8), 2: ("B", 12, 6.5), 3: ("BI", 11, 6)}
    body_h = 5.4
    width = pdf.w - pdf.l_margin - pdf.r_margin

    for blk in doc.blocks:
        if blk.kind == "heading":
            style, size, h = heading_fonts[blk.level]
            # keep a heading with at least a few lines of its section
            if pdf.get_y() > pdf.page_break_trigger - 30:
                pdf.add_page()
            pdf.ln(3 if blk.level > 1 else 5)
            pdf.start_section(blk.text, level=blk.level - 1)
            pdf.set_font("Helvetica", style, size)
            pdf.multi_cell(0, h, blk.text, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(1.5)
        elif blk.kind == "para":
            pdf.set_font("Helvetica", "", 10.5)
            pdf.multi_cell(0, body_h, blk.text, markdown=True, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(2.5)
        elif blk.kind == "notice":
            pdf.set_font("Helvetica", "B", 10.5)
            pdf.set_fill_color(255, 243, 205)
            pdf.multi_cell(0, body_h + 0.6, blk.text.replace("**", ""), fill=True, border=1,
                           padding=2.5, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(3)
        elif blk.kind in ("ul", "ol"):
            pdf.set_font("Helvetica", "", 10.5)
            for n, item in enumerate(blk.items, 1):
                marker = "-" if blk.kind == "ul" else f"{n}."
                pdf.set_x(pdf.l_margin + 3)
                pdf.cell(7, body_h, marker)
                pdf.multi_cell(width - 10, body_h, item, markdown=True, new_x="LMARGIN", new_y="NEXT")
                pdf.ln(0.8)
            pdf.ln(2)
        elif blk.kind == "table":
            pdf.set_font("Helvetica", "", 9.5)
            ncols = max(len(r) for r in blk.items)
            rows = [r + [""] * (ncols - len(r)) for r in blk.items]
            if pdf.get_y() > pdf.page_break_trigger - 25:
                pdf.add_page()
            with pdf.table(
                line_height=5.2,
                padding=1.6,
                headings_style=FontFace(emphasis="BOLD", fill_color=(228, 236, 239)),
                markdown=True,
                first_row_as_headings=True,
            ) as table:
                for r in rows:
                    row = table.row()
                    for c in r:
                        row.cell(c)
            pdf.ln(3)
        else:  # pragma: no cover
            raise ValueError(blk.kind)

    return bytes(pdf.output())


# --------------------------------------------------------------------------
# DOCX
# --------------------------------------------------------------------------

FIXED_ZIP_TIME = (2025, 1, 1, 0, 0, 0)


def _add_runs(par, text: str, bold_all: bool = False) -> None:
    for chunk, bold in split_bold(text):
        run = par.add_run(chunk)
        if bold or bold_all:
            run.bold = True


def render_docx(doc: Doc, rel_out: str) -> bytes:
    import docx
    from docx.shared import Pt

    d = docx.Document()
    when = doc_date(doc).replace(tzinfo=None)
    cp = d.core_properties
    cp.title = doc.title
    cp.author = doc.meta.get("author", COMPANY)
    cp.subject = doc.meta.get("subject", "")
    cp.keywords = COMPANY
    cp.comments = ""
    cp.category = rel_out.split("/")[0]
    cp.last_modified_by = doc.meta.get("author", COMPANY)
    cp.revision = 1
    cp.created = when
    cp.modified = when
    cp.last_printed = when

    style = d.styles["Normal"]
    style.font.name = "Calibri"
    style.font.size = Pt(11)

    d.add_heading(doc.title, level=0)
    for blk in doc.blocks:
        if blk.kind == "heading":
            d.add_heading(blk.text, level=blk.level)
        elif blk.kind == "para":
            _add_runs(d.add_paragraph(), blk.text)
        elif blk.kind == "notice":
            _add_runs(d.add_paragraph(style="Intense Quote"), blk.text, bold_all=True)
        elif blk.kind == "ul":
            for item in blk.items:
                _add_runs(d.add_paragraph(style="List Bullet"), item)
        elif blk.kind == "ol":
            for item in blk.items:
                _add_runs(d.add_paragraph(style="List Number"), item)
        elif blk.kind == "table":
            ncols = max(len(r) for r in blk.items)
            table = d.add_table(rows=0, cols=ncols)
            table.style = "Table Grid"
            for i, r in enumerate(blk.items):
                cells = table.add_row().cells
                for j in range(ncols):
                    text = r[j] if j < len(r) else ""
                    par = cells[j].paragraphs[0]
                    _add_runs(par, text, bold_all=(i == 0))
            d.add_paragraph()
        else:  # pragma: no cover
            raise ValueError(blk.kind)

    buf = io.BytesIO()
    d.save(buf)
    return _normalise_zip(buf.getvalue())


def _normalise_zip(data: bytes) -> bytes:
    """Rewrite a zip with fixed timestamps so output is reproducible."""
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            zi = zipfile.ZipInfo(info.filename, date_time=FIXED_ZIP_TIME)
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.external_attr = 0o644 << 16
            zi.create_system = 0
            dst.writestr(zi, src.read(info.filename))
    return out.getvalue()


# --------------------------------------------------------------------------

def build(rel_src: str, rel_out: str) -> bytes:
    doc = parse((SRC_DIR / rel_src).read_text(encoding="utf-8"))
    if rel_out.endswith(".pdf"):
        return render_pdf(doc, rel_out)
    if rel_out.endswith(".docx"):
        return render_docx(doc, rel_out)
    raise ValueError(rel_out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only verify outputs are up to date")
    args = ap.parse_args(argv)
    stale = []
    for rel_src, rel_out in DOCUMENTS:
        data = build(rel_src, rel_out)
        out = CORPUS_DIR / rel_out
        if args.check:
            if not out.exists() or out.read_bytes() != data:
                stale.append(rel_out)
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        if not out.exists() or out.read_bytes() != data:
            out.write_bytes(data)
            print(f"wrote {rel_out} ({len(data)} bytes)")
        else:
            print(f"unchanged {rel_out}")
    if stale:
        print("stale: " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
