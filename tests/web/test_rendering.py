"""How the page shows what the service can answer, with the service's responses stood in by
playwright routes: removed and unverified sentences, the fallback, "not covered", errors with
sources, the SSE parser on awkward chunks, and the evaluation report."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from tests.web.conftest import LIVE_ADMIN_KEY, Page

pytestmark = pytest.mark.slow

NOT_COVERED = "The documents do not cover this."
VACATION = "Full-time employees get 25 vacation days a year. Unused days carry over up to 5 days."
BOATS = "Boats are not provided. Staff may park bicycles in the basement."


def source(n: int, text: str, *, start: int, title: str, section: str = "", page: int | None = None) -> dict:
    return {
        "n": n, "chunk_id": f"d{n}:c", "chunk_ids": [f"d{n}:c"], "document_id": f"d{n}",
        "source": f"hr/doc-{n}.md", "title": title, "section": section, "page": page, "text": text,
        "start": start, "end": start + len(text), "score": 0.5,
    }  # fmt: skip


SOURCES = [
    source(1, VACATION, start=120, title="Vacation Policy", section="Allowance", page=2),
    source(2, BOATS, start=1000, title="Facilities <b>Guide</b>"),
]


def citation(n: int, sentence: str, quote: str, *, verified: bool, reason: str = "") -> dict:
    src = SOURCES[n - 1]
    at = src["text"].index(quote) + src["start"]
    return {
        "n": n, "sentence": sentence, "source": src["source"], "title": src["title"],
        "section": src["section"], "page": src["page"], "quote": quote, "start": at,
        "end": at + len(quote), "score": 0.9 if verified else 0.41, "verified": verified, "reason": reason,
    }  # fmt: skip


def response(answer: str, citations: list[dict], **extra: Any) -> dict:
    return {
        "answer": answer, "covered": True, "citations": citations, "sources": SOURCES,
        "usage": {"prompt_tokens": 812, "completion_tokens": 40}, "model": "smollm2",
        "generator": "local", "fallback": False, "removed": [],
        "timings_ms": {"retrieve": 20.0, "generate": 900.0}, "prompt": None, **extra,
    }  # fmt: skip


KEPT = "Full-time employees get 25 vacation days a year [1]."
BOAT = "Every employee also gets a free boat [2]."
STRICT = response(
    KEPT,
    [citation(1, KEPT, "Full-time employees get 25 vacation days a year.", verified=True)],
    removed=[BOAT, "Boats are serviced monthly [2]."],
)
FALLBACK = response(
    "Full-time employees get 25 vacation days a year [1].",
    [citation(1, KEPT, "Full-time employees get 25 vacation days a year.", verified=True)],
    removed=[BOAT],
    fallback=True,
    generator="extractive",
)
LENIENT = response(
    f"{KEPT} {BOAT}",
    [
        citation(1, KEPT, "Full-time employees get 25 vacation days a year.", verified=True),
        citation(2, BOAT, "Boats are not provided.", verified=False, reason="similarity 0.41 below 0.55"),
    ],
)
UNCOVERED = {
    **response(NOT_COVERED, []),
    "covered": False, "generator": "none", "model": "none", "sources": [],
}  # fmt: skip


def sse(*events: tuple[str, Any]) -> str:
    """Events as sse-starlette writes them: CRLF line ends, and a ping comment in between."""
    out = [": ping - 2026-01-01 00:00:00\r\n\r\n"]
    for name, payload in events:
        out.append(f"event: {name}\r\ndata: {json.dumps(payload)}\r\n\r\n")
    return "".join(out)


def answer_events(res: dict, deltas: list[str]) -> str:
    return sse(("sources", res["sources"]), *(("delta", {"text": d}) for d in deltas), ("answer", res))


TIMEOUT = {
    "detail": "the model took over 60 s",
    "error": "GeneratorTimeout",
    "status": 504,
    "sources": SOURCES,
}
DOWN = {"detail": "llama server unreachable", "error": "GeneratorUnavailable", "sources": SOURCES}
EVENTS = "text/event-stream"
# question -> (status, content type, body)
REPLIES = {
    "strict": (200, EVENTS, answer_events(STRICT, [KEPT, " ", BOAT])),
    "fallback": (200, EVENTS, answer_events(FALLBACK, ["Boats [2]."])),
    "lenient": (200, EVENTS, answer_events(LENIENT, [KEPT, " ", BOAT])),
    "uncovered": (200, EVENTS, sse(("sources", []), ("answer", UNCOVERED))),
    "timeout": (200, EVENTS, sse(("sources", SOURCES), ("delta", {"text": "Full"}), ("error", TIMEOUT))),
    "down": (503, "application/json", json.dumps(DOWN)),
}
BAD_REQUEST = (400, "application/json", json.dumps({"detail": "question is empty", "error": "BadRequest"}))


class FakeQuery:
    """Stands in for POST /v1/query, answering by question; keeps the requests it saw."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict, dict]] = []

    def __call__(self, route: Any) -> None:
        body = route.request.post_data_json
        self.requests.append((body, route.request.headers))
        status, content_type, text = REPLIES.get(body["question"], BAD_REQUEST)
        route.fulfill(status=status, content_type=content_type, body=text)


def test_removed_unverified_fallback_and_not_covered(web: Page) -> None:
    page = web.page
    fake = FakeQuery()
    page.route("**/v1/query", fake)
    web.open(LIVE_ADMIN_KEY)

    page.select_option("#strict", "true")
    web.ask("strict", generator="local")
    removed = page.locator("#answer .removed")
    assert "2 unsupported sentences removed" in removed.inner_text()
    assert [li.inner_text() for li in removed.locator("li").all()] == STRICT["removed"]
    assert page.inner_text("#answer-text") == KEPT
    assert "Extractive fallback: no" in page.inner_text("#answer .badges")
    assert "Model: smollm2" in page.inner_text("#answer .badges")
    body, headers = fake.requests[-1]
    assert body == {
        "question": "strict",
        "collection": "default",
        "generator": "local",
        "strict": True,
        "stream": True,
    }
    assert headers["authorization"] == f"Bearer {LIVE_ADMIN_KEY}"
    web.screenshot("10-strict-removed")

    web.ask("fallback", generator="local")
    badges = page.inner_text("#answer .badges")
    assert "Extractive fallback: yes" in badges and "Generator: extractive" in badges
    assert "Extractive fallback." in page.inner_text("#answer")
    assert "1 unsupported sentence removed" in page.inner_text("#answer .removed")

    page.select_option("#strict", "false")
    web.ask("lenient", generator="local")
    assert fake.requests[-1][0]["strict"] is False
    bad = page.locator("#answer-text button.cite.unverified")
    assert bad.count() == 1 and bad.inner_text() == "[2?]"
    assert "free boat" in page.inner_text("#answer-text .unverified-sentence")
    assert "1 citation could not be verified" in page.inner_text("#answer")
    bad.click()
    assert page.inner_text("#passage-text mark") == "Boats are not provided."
    assert "Not verified: similarity 0.41 below 0.55" in page.inner_text("#passage")
    # A title holding markup is text too.
    assert "Facilities <b>Guide</b>" in page.inner_text("#passage-title")
    page.locator("#answer-text button.cite:not(.unverified)").click()
    assert page.inner_text("#passage-text mark") == "Full-time employees get 25 vacation days a year."
    assert "page 2" in page.inner_text("#sources-list li[data-n='1']")
    web.screenshot("11-lenient-unverified")

    web.ask("uncovered")
    text = page.locator("#answer-text")
    assert text.inner_text() == NOT_COVERED
    assert "not-covered" in (text.get_attribute("class") or "")
    assert "Not covered" in page.inner_text("#answer .badges")
    web.screenshot("12-not-covered")


def test_errors_are_shown_with_their_sources(web: Page) -> None:
    page = web.page
    page.route("**/v1/query", FakeQuery())
    web.open(LIVE_ADMIN_KEY)

    web.ask("timeout")
    alert = page.locator("#answer [role=alert]")
    assert "504" in alert.inner_text() and "GeneratorTimeout" in alert.inner_text()
    assert "the model took over 60 s" in alert.inner_text()
    assert page.locator("#sources-list li.source").count() == 2
    web.screenshot("13-stream-error")

    web.ask("down")
    alert = page.locator("#answer [role=alert]")
    assert "503" in alert.inner_text() and "llama server unreachable" in alert.inner_text()
    assert page.locator("#sources-list li.source").count() == 2

    web.ask("bad")
    assert "400" in page.inner_text("#answer [role=alert]")
    assert page.locator("#sources-list li.source").count() == 0


def test_sse_parser_handles_split_chunks(web: Page) -> None:
    """Line ends split across chunks (a CRLF cut in two), comments, several data lines, no final
    blank line: the events come out whole."""
    web.open(None)
    events = web.page.evaluate(
        """async () => {
            const { SSEParser } = await import('/static/sse.js');
            const out = [];
            const p = new SSEParser((e) => out.push(e));
            const stream = ': ping\\r\\n\\r\\nevent: delta\\r\\ndata: {"text": "a"}\\r\\n\\r\\n'
              + 'event: sources\\ndata: [1,\\ndata: 2]\\n\\nevent:answer\\rdata:{"answer": "x"}\\r';
            for (const size of [1, 2, 3, 7]) {
              out.length = 0;
              for (let i = 0; i < stream.length; i += size) p.push(stream.slice(i, i + size));
              p.end();
              if (JSON.stringify(out) !== JSON.stringify(window.__first || out)) return {size, out};
              window.__first = [...out];
            }
            return out;
        }"""
    )
    assert events == [
        {"event": "delta", "data": '{"text": "a"}'},
        {"event": "sources", "data": "[1,\n2]"},
        {"event": "answer", "data": '{"answer": "x"}'},
    ]


def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (60, 30), (30, 90, 190)).save(buf, format="PNG")
    return buf.getvalue()


def rung(
    rung: str, label: str, accuracy: float, tokens: float, abstention: float, precision: float | None
) -> dict:
    return {
        "rung": rung, "label": label, "accuracy": accuracy, "prompt_tokens": tokens,
        "abstention_accuracy": abstention, "citation_precision": precision,
    }  # fmt: skip


VERDICT = "Do not fine-tune yet: <i>retrieval</i> misses explain most failures."
REPORT = {
    "meta": {
        "gold": "questions.jsonl", "collection": "default", "questions": 82,
        "started": "2026-01-01 10:00:00 UTC", "seconds": 321.0,
    },
    "retrieval": {
        "hybrid": {"hit_at_1": 0.8, "hit_at_5": 0.95, "mrr_at_10": 0.86, "ndcg_at_10": 0.88, "questions": 66}
    },
    "ladders": {
        "local": {
            "model": "smollm2",
            "rungs": [
                rung("bare", "bare question", 0.1, 40.0, 0.0, None),
                rung("verified", "+ citation verification", 0.62, 1450.5, 0.9, 0.97),
            ],
            "fine_tune": {
                "verdict": VERDICT, "best_rung": "verified", "best_accuracy": 0.62,
                "plateau_rung": "verified", "plateau_accuracy": 0.62, "failures": 31,
                "retrieval_misses": 20, "generation_errors": 8, "abstention_errors": 3,
            },
        }
    },
}  # fmt: skip


def test_evaluation_report_chart_and_none_yet(web: Page) -> None:
    page = web.page
    seen: dict[str, Any] = {"report": True, "chart_auth": None}
    png = _png()

    def report(route: Any) -> None:
        if seen["report"]:
            route.fulfill(status=200, content_type="application/json", body=json.dumps(REPORT))
        else:
            body = {"detail": "no evaluation of collection 'default' yet", "error": "NotFound"}
            route.fulfill(status=404, content_type="application/json", body=json.dumps(body))

    def chart(route: Any) -> None:
        seen["chart_auth"] = route.request.headers.get("authorization")
        route.fulfill(status=200, content_type="image/png", body=png)

    page.route(lambda url: "/v1/eval/latest?" in url, report)
    page.route(lambda url: "/v1/eval/latest/ladder.png" in url, chart)
    web.open(LIVE_ADMIN_KEY)
    img = page.locator("#ladder-img")
    img.wait_for()
    assert (img.get_attribute("src") or "").startswith("blob:")
    page.wait_for_function("document.getElementById('ladder-img').naturalWidth === 60")
    assert seen["chart_auth"] == f"Bearer {LIVE_ADMIN_KEY}"
    rows = page.locator("#evaluation .ladder-table tbody tr").all()
    assert [r.locator("th").inner_text() for r in rows] == ["bare question", "+ citation verification"]
    cells = rows[1].locator("td").all_inner_texts()
    assert cells[:2] == ["62%", "1,451"]
    verdict = page.inner_text("#evaluation .verdict")
    assert verdict == VERDICT
    web.screenshot("14-evaluation")

    seen["report"] = False
    page.get_by_role("button", name="Show latest report").click()
    page.locator("#evaluation .no-eval").wait_for()
    text = page.inner_text("#evaluation")
    assert "No evaluation of collection default has been run yet" in text
    assert "rag-eval" in text and "POST /v1/eval" in text
