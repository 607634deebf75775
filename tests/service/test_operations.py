"""Operations: request ids, JSON logs, Prometheus metrics, the body size limit and CORS."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from ingest.embed import Embedder
from ingest.settings import Settings
from service.api.app import create_app
from service.logs import JsonFormatter

QUESTION = "How many vacation days do employees get?"


@pytest.fixture(scope="module")
def client(corpus_settings: Settings, embedder: Embedder) -> Iterator[TestClient]:
    settings = corpus_settings.model_copy(
        update={"max_request_mb": 0.05, "cors_origins": ["https://intranet.example"]}
    )
    with TestClient(create_app(settings, embedder=embedder)) as test_client:
        yield test_client


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """What the access logger writes, formatted as the service writes it."""
    sink = io.StringIO()
    handler = logging.StreamHandler(sink)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("ragfirst.access")
    logger.addHandler(handler)
    yield sink
    logger.removeHandler(handler)


def test_request_id_is_echoed_or_made(client: TestClient) -> None:
    given = client.get("/healthz", headers={"X-Request-ID": "client-id-42"})
    assert given.headers["x-request-id"] == "client-id-42"
    made = client.get("/healthz")
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
    forged = client.get("/healthz", headers={"X-Request-ID": "x" * 65})
    assert forged.headers["x-request-id"] != "x" * 65
    assert made.headers["x-request-id"] != client.get("/healthz").headers["x-request-id"]


def test_access_log_is_json_with_the_request_id(client: TestClient, json_log: io.StringIO) -> None:
    response = client.post("/v1/search", json={"query": QUESTION}, headers={"X-Request-ID": "trace-7"})
    assert response.status_code == 200
    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    line = next(entry for entry in lines if entry["request_id"] == "trace-7")
    assert line["route"] == "/v1/search" and line["status"] == 200 and line["method"] == "POST"
    assert line["duration_ms"] > 0 and line["level"] == "info" and line["ts"].endswith("Z")


def test_error_lines_carry_the_request_id() -> None:
    from service.logs import request_id

    token = request_id.set("abc123")
    try:
        record = logging.LogRecord("ragfirst.x", logging.ERROR, __file__, 1, "boom %s", ("now",), None)
        entry = json.loads(JsonFormatter().format(record))
    finally:
        request_id.reset(token)
    assert entry == {**entry, "msg": "boom now", "request_id": "abc123", "level": "error"}


def _metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_requests_stages_tokens_and_verification(client: TestClient) -> None:
    before = client.get("/metrics").text
    client.post("/v1/search", json={"query": QUESTION})
    body = client.post("/v1/query", json={"question": QUESTION, "generator": "extractive"}).json()
    client.post("/v1/query", json={"question": "", "generator": "extractive"})
    after = client.get("/metrics")
    assert after.headers["content-type"].startswith("text/plain")
    text = after.text
    search = dict(method="POST", route="/v1/search", status="200")
    assert (
        _metric(text, "ragfirst_http_requests_total", **search)
        == _metric(before, "ragfirst_http_requests_total", **search) + 1
    )
    assert _metric(text, "ragfirst_http_requests_total", route="/v1/query", status="400") >= 1
    assert _metric(text, "ragfirst_http_request_duration_seconds_count", route="/v1/query") >= 2
    for stage in ("embed", "search", "keyword", "fuse", "prompt", "generate", "verify"):
        assert _metric(text, "ragfirst_stage_duration_seconds_count", stage=stage) >= 1, stage
    outcome = "fallback" if body["fallback"] else ("trimmed" if body["removed"] else "verified")
    assert _metric(text, "ragfirst_answers_total", generator=body["generator"], outcome=outcome) >= 1
    assert _metric(text, "ragfirst_citations_total", verified="true") >= len(body["citations"]) > 0
    assert _metric(text, "ragfirst_generator_tokens_total", generator="extractive", kind="completion") > 0


def test_body_over_the_limit_is_413_with_or_without_a_length(client: TestClient) -> None:
    big = b"x" * 60_000
    declared = client.post("/v1/documents", files={"files": ("big.txt", big, "text/plain")})
    assert declared.status_code == 413
    assert "RAG_MAX_REQUEST_MB" in declared.json()["detail"]

    def chunks() -> Iterator[bytes]:
        for _ in range(8):
            yield b'{"query": "' + b"a" * 8000

    streamed = client.post("/v1/search", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413, streamed.text
    assert client.post("/v1/search", json={"query": QUESTION}).status_code == 200


def test_cors_allows_the_configured_origin_only(client: TestClient) -> None:
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    ok = client.options("/v1/search", headers={"Origin": "https://intranet.example", **preflight})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "https://intranet.example"
    other = client.options("/v1/search", headers={"Origin": "https://evil.example", **preflight})
    assert "access-control-allow-origin" not in other.headers
    simple = client.get("/healthz", headers={"Origin": "https://intranet.example"})
    assert "x-request-id" in simple.headers["access-control-expose-headers"].lower()


def test_settings_split_cors_origins_from_one_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_CORS_ORIGINS", "https://a.example, https://b.example")
    assert Settings(_env_file=None).cors_origins == ["https://a.example", "https://b.example"]  # type: ignore[call-arg]
