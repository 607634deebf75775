"""Hostile input against a live ``python -m service``: each gets a 4xx or is skipped with a reason,
the server stays up and within a memory bound, and the documents already indexed stay as they were.

The server runs as its own process, so its memory is measured alone (``VmRSS``) and its timeouts
are the ones uvicorn and the middleware really apply.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import select
import socket
import struct
import sys
import threading
import time
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ingest.load import MAX_PDF_PAGES, MAX_UNZIPPED_BYTES
from tests.conftest import REPO, free_port, server_process

KEY = "hostile-admin-3c7d"
AUTH = {"Authorization": f"Bearer {KEY}"}
BODY_TIMEOUT_S = 2.0
MAX_REQUEST_MB = 8
# The most the server's resident memory may grow over every hostile request of this module.
RSS_GROWTH_MB = 200
KEEP = b"# Travel\n\nHotel nights are reimbursed up to 180 euros per night in every city.\n"

pytestmark = pytest.mark.slow


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


class Server:
    def __init__(self, url: str, pid: int) -> None:
        self.url = url
        self.pid = pid
        self.port = int(url.rsplit(":", 1)[1])
        self.client = httpx.Client(base_url=url, headers=AUTH, timeout=60)
        self.baseline_rss = 0.0
        self.kept: dict[str, int] = {}

    def upload(self, name: str, data: bytes, collection: str = "default") -> httpx.Response:
        files = [("files", (name, data))]
        return self.client.post("/v1/documents", files=files, data={"collection": collection})

    def sources(self, collection: str = "default") -> dict[str, int]:
        listed = self.client.get("/v1/documents", params={"collection": collection}).json()
        return {d["source"]: d["chunks"] for d in listed["documents"]}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("hostile")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(
        HF_HUB_OFFLINE="1",
        RAG_CHROMA_PATH=str(root / "chroma"),
        RAG_EVAL_DIR=str(root / "eval"),
        RAG_GENERATOR="extractive",
        RAG_API_KEYS=f"{KEY}:admin",
        RAG_MAX_REQUEST_MB=str(MAX_REQUEST_MB),
        RAG_REQUEST_BODY_TIMEOUT_S=str(BODY_TIMEOUT_S),
        RAG_LOG_LEVEL="warning",
    )
    args = [sys.executable, "-m", "service", "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    with server_process(
        args, ready_url=f"{url}/healthz", log_path=root / "server.log", timeout=120, env=env, cwd=root
    ) as proc:
        srv = Server(url, proc.pid)
        added = srv.upload("keep.md", KEEP).json()["files"][0]
        assert added["outcome"] == "added", added
        srv.baseline_rss = rss_mb(proc.pid)
        srv.kept = srv.sources()
        yield srv
        print(f"\nserver RSS: {srv.baseline_rss:.0f} MB after the first upload, "
              f"{rss_mb(proc.pid):.0f} MB after every hostile request")  # fmt: skip


def multipart(name: bytes, data: bytes) -> tuple[bytes, str]:
    """A multipart body written by hand, so a file name can hold what no client library would send."""
    boundary = "hostileboundary7f3a"
    body = (
        f"--{boundary}\r\n".encode()
        + b'Content-Disposition: form-data; name="files"; filename="' + name + b'"\r\n'
        + b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n"
        + f"--{boundary}--\r\n".encode()
    )  # fmt: skip
    return body, f"multipart/form-data; boundary={boundary}"


@pytest.mark.parametrize(
    ("name", "status", "source"),
    [
        (b"../../etc/passwd.md", 200, "passwd.md"),
        (b"/abs/path.md", 200, "path.md"),
        (b"..\\..\\windows\\win.md", 200, "win.md"),
        (b"a\x00b.md", 200, "ab.md"),
        (b"x" * 3997 + b".md", 400, None),
        (b"../..", 400, None),
    ],
    ids=["dot-dot", "absolute", "backslashes", "nul", "4000-chars", "only-dots"],
)
def test_upload_names(server: Server, name: bytes, status: int, source: str | None) -> None:
    """The rule (``safe_source``): a name's last path part, without control characters; empty, a dot
    or two, or over 255 characters is a 400. Nothing is written anywhere but the store."""
    body, content_type = multipart(name, b"# Note\n\nThe cafeteria opens at eight in the morning.\n")
    response = server.client.post("/v1/documents", content=body, headers={"content-type": content_type})
    assert response.status_code == status, response.text
    if source:
        assert response.json()["files"][0]["source"] == source
        assert source in server.sources()
    else:
        assert response.json()["error"] == "BadRequest"
    assert all("/" not in s and "\\" not in s and "\x00" not in s for s in server.sources())
    assert not (Path("/etc/passwd.md").exists() or Path("/abs/path.md").exists())


def test_a_bad_name_fails_the_whole_upload_before_anything_is_indexed(server: Server) -> None:
    files = [("files", ("fine.md", b"# Fine\n\nA fine note.\n")), ("files", ("y" * 4000 + ".md", b"x"))]
    response = server.client.post("/v1/documents", files=files)
    assert response.status_code == 400 and "over 255" in response.json()["detail"]
    assert "fine.md" not in server.sources()


def test_pdf_with_5000_pages_is_skipped(server: Server) -> None:
    from fpdf import FPDF
    from pypdf import PdfReader, PdfWriter

    pdf = FPDF()
    pdf.set_font("helvetica", size=11)
    pdf.add_page()
    pdf.cell(text="One page of a very long manual.")
    page = PdfReader(io.BytesIO(pdf.output())).pages[0]
    writer = PdfWriter()
    for _ in range(5000):
        writer.add_page(page)
    data = io.BytesIO()
    writer.write(data)
    started = time.monotonic()
    response = server.upload("manual.pdf", data.getvalue())
    elapsed = time.monotonic() - started
    outcome = response.json()["files"][0]
    assert response.status_code == 200 and outcome["outcome"] == "skipped", outcome
    assert f"5000 pages, over the {MAX_PDF_PAGES}-page limit" in outcome["reason"]
    assert elapsed < 10, elapsed


CONTENT_TYPES = (
    '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-'
    'officedocument.wordprocessingml.document.main+xml"/></Types>'
)
RELS = (
    '<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/'
    'relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/'
    'officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/></Relationships>'
)


def docx_with(document_xml: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", CONTENT_TYPES)
        archive.writestr("_rels/.rels", RELS)
        archive.writestr("word/document.xml", document_xml)
    return out.getvalue()


def docx_bomb(expanded: int) -> bytes:
    """A DOCX whose word/document.xml inflates to ``expanded`` bytes of spaces, with a true CRC.

    The deflate stream is one fully flushed block of 16 MB, repeated: a flush ends it on a byte
    and forgets the history, so copies of it chain into a valid stream, built in a second."""
    block = b" " * (16 * 2**20)
    squeeze = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = squeeze.compress(block) + squeeze.flush(zlib.Z_FULL_FLUSH)
    copies = expanded // len(block)
    stream = piece * copies + squeeze.flush()
    crc = 0
    for _ in range(copies):
        crc = zlib.crc32(block, crc)
    entries = [(name, zlib.compress(text.encode())[2:-4], zlib.crc32(text.encode()), len(text.encode()))
               for name, text in (("[Content_Types].xml", CONTENT_TYPES), ("_rels/.rels", RELS))]  # fmt: skip
    entries.append(("word/document.xml", stream, crc, copies * len(block)))
    out, central = io.BytesIO(), io.BytesIO()
    for name, data, checksum, size in entries:
        offset = out.tell()
        raw = name.encode()
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, checksum, len(data), size,
                              len(raw), 0) + raw + data)  # fmt: skip
        central.write(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0, checksum, len(data),
                                  size, len(raw), 0, 0, 0, 0, 0, offset) + raw)  # fmt: skip
    directory = central.getvalue()
    out.write(directory)
    out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(directory),
                          out.tell() - len(directory), 0))  # fmt: skip
    return out.getvalue()


W = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'


def test_docx_zip_bomb_is_refused_before_parsing(server: Server) -> None:
    data = docx_bomb(2 * 2**30)  # word/document.xml inflates to 2 GB
    assert len(data) < 4 * 2**20
    with zipfile.ZipFile(io.BytesIO(data)) as archive:  # a well-formed archive: only its size is wrong
        assert archive.getinfo("word/document.xml").file_size == 2 * 2**30
        assert archive.open("word/document.xml").read(100) == b" " * 100
    started = time.monotonic()
    response = server.upload("bomb.docx", data)
    outcome = response.json()["files"][0]
    assert response.status_code == 200 and outcome["outcome"] in {"skipped", "failed"}, outcome
    assert f"over {MAX_UNZIPPED_BYTES // 2**20} MB" in outcome["reason"]
    assert time.monotonic() - started < 10


def test_docx_entity_expansion_is_not_expanded(server: Server) -> None:
    """'Billion laughs': ten levels of ten references. python-docx's parser resolves no entities."""
    entities = '<!ENTITY lol0 "lol">' + "".join(
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)
    )
    xml = (
        f'<?xml version="1.0"?><!DOCTYPE w:document [{entities}]><w:document {W}><w:body>'
        f"<w:p><w:r><w:t>Laughs: &lol9;</w:t></w:r></w:p></w:body></w:document>"
    ).encode()
    response = server.upload("laughs.docx", docx_with(xml))
    outcome = response.json()["files"][0]
    assert response.status_code == 200, response.text
    assert outcome["outcome"] in {"added", "skipped", "failed"}
    assert outcome["reason"] or outcome["chunks"]
    if outcome["outcome"] == "added":
        found = server.client.post("/v1/search", json={"query": "Laughs lol", "top_k": 50}).json()
        assert all("lollollol" not in r["text"] for r in found["results"])


def test_html_scripts_are_not_indexed_and_echoes_stay_inert(server: Server) -> None:
    page = b"""<html><head><title>Badge policy</title><script>alert('head')</script></head>
    <body onload="steal()"><h1>Badge policy</h1>
    <p onclick="alert('click')">Visitors wear a yellow badge at all times in the building.</p>
    <img src="x" onerror="alert('img')"><script>document.cookie='stolen'</script>
    <p>Write &lt;script&gt;alert(1)&lt;/script&gt; in a ticket and it shows as text.</p>
    <a href="javascript:alert('link')">help</a></body></html>"""
    outcome = server.upload("badges.html", page).json()["files"][0]
    assert outcome["outcome"] == "added", outcome
    response = server.client.post("/v1/search", json={"query": "yellow badge visitors", "top_k": 10})
    assert response.headers["content-type"] == "application/json"
    texts = " ".join(r["text"] for r in response.json()["results"] if r["source"] == "badges.html")
    assert "yellow badge" in texts
    for code in ("alert('head')", "document.cookie", "steal()", "alert('click')", "onerror", "javascript:"):
        assert code not in texts
    # Text that looks like markup is text: JSON carries it, and the page shows it as a text node
    # under a policy that runs no inline script.
    assert "<script>alert(1)</script>" in texts
    csp = server.client.get("/").headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp


@pytest.mark.parametrize("route", ["/v1/query", "/v1/search"])
@pytest.mark.parametrize("depth", [10_000, 900])
def test_deeply_nested_json_is_a_4xx(server: Server, route: str, depth: int) -> None:
    """10 000 levels do not parse; 900 parse, and the validation error must not echo them back
    through a recursive encoder."""
    field = "question" if route == "/v1/query" else "query"
    body = f'{{"{field}": {"[" * depth}"x"{"]" * depth}}}'
    response = server.client.post(route, content=body, headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500, response.text[:500]
    assert server.client.get("/healthz").status_code == 200


def raw_request(port: int, head: bytes, pieces: Iterable[bytes]) -> bytes:
    """Send ``head`` and then ``pieces`` until the server answers; its whole answer. Writing stops
    as soon as an answer is there, so a server that answers early and closes is read, not raced."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        for piece in pieces:
            if select.select([sock], [], [], 0)[0]:
                break
            try:
                sock.sendall(piece)
            except OSError:
                break
        data = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                data += chunk
        return data


def test_body_over_the_limit_is_413(server: Server) -> None:
    limit = MAX_REQUEST_MB * 2**20
    head = f"POST /v1/documents HTTP/1.1\r\nHost: x\r\nauthorization: Bearer {KEY}\r\ncontent-type: "
    piece = b"x" * 2**16
    declared = raw_request(
        server.port,
        f"{head}multipart/form-data; boundary=b\r\ncontent-length: {limit + 1}\r\n\r\n".encode(),
        [piece] * (limit // len(piece) + 1),
    )
    assert declared.startswith(b"HTTP/1.1 413"), declared[:300]
    assert b'"error": "PayloadTooLarge"' in declared
    # No length declared: the limit applies while the chunks arrive.
    chunked = raw_request(
        server.port,
        b"POST /v1/search HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
        + f"authorization: Bearer {KEY}\r\ntransfer-encoding: chunked\r\n\r\n".encode(),
        [b"%x\r\n%s\r\n" % (len(piece), piece)] * (2 * limit // len(piece)),
    )
    assert chunked.startswith(b"HTTP/1.1 413"), chunked[:300]
    assert server.client.get("/healthz").status_code == 200


def test_slow_body_is_cut_off_while_others_are_served(server: Server) -> None:
    body = json.dumps({"query": "hotel nights", "top_k": 3}).encode()
    slow = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    slow.sendall(
        b"POST /v1/search HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
        + f"authorization: Bearer {KEY}\r\ncontent-length: {len(body)}\r\n\r\n".encode()
    )
    reply: dict[str, Any] = {}

    def trickle() -> None:
        started = time.monotonic()
        try:
            for byte in body:
                slow.sendall(bytes([byte]))
                time.sleep(1.0)
        except OSError:
            pass  # the server closed the connection: what it sent is read below
        data = b""
        try:
            while chunk := slow.recv(65536):
                data += chunk
        except OSError:
            pass
        reply.update(data=data, elapsed=time.monotonic() - started)

    thread = threading.Thread(target=trickle)
    thread.start()
    # Meanwhile everyone else is served at once.
    for _ in range(5):
        started = time.monotonic()
        assert server.client.get("/healthz").status_code == 200
        found = server.client.post("/v1/search", json={"query": "hotel nights per night", "top_k": 3})
        assert found.status_code == 200 and time.monotonic() - started < 5
        time.sleep(0.3)
    thread.join(timeout=30)
    slow.close()
    assert not thread.is_alive()
    assert reply["data"].startswith(b"HTTP/1.1 408"), reply["data"][:200]
    assert b"request body too slow" in reply["data"]
    # Two seconds of grace plus a sliver per byte sent: cut off long before the body was done.
    assert reply["elapsed"] < BODY_TIMEOUT_S + 3, reply["elapsed"]


def test_zz_nothing_else_lost_and_memory_bounded(server: Server) -> None:
    """Runs last in the module: the first document is intact and the server grew within the bound."""
    assert server.client.get("/healthz").status_code == 200
    sources = server.sources()
    for source, chunks in server.kept.items():
        assert sources.get(source) == chunks
    found = server.client.post("/v1/search", json={"query": "hotel nights reimbursed", "top_k": 3}).json()
    assert found["results"][0]["source"] == "keep.md"
    growth = rss_mb(server.pid) - server.baseline_rss
    assert growth < RSS_GROWTH_MB, f"server RSS grew by {growth:.0f} MB"


def test_repo_untouched_by_uploads() -> None:
    assert not (REPO / "passwd.md").exists() and not (REPO / "etc").exists()
