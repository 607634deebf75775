"""Keys limited to collections (``KEY:ROLE:hr``) and the per-key rate limit, on every surface: REST,
the SSE stream, the chat endpoint, the evaluation routes and the MCP server, against a real service
on a loopback socket over two real collections.

A limited key must meet a collection outside its list exactly as a collection that does not exist:
same status, same body but for the name, so that it learns no names.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from fastapi.testclient import TestClient
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, TextContent
from pydantic import SecretStr, ValidationError

from ingest.embed import Embedder
from ingest.pipeline import Ingestor
from ingest.settings import ApiKey, Settings, parse_api_keys
from service.api.app import create_app
from service.errors import RateLimited
from service.ratelimit import RateLimiter
from tests.conftest import serve_app

HR_ADMIN = "hr-admin-51c0a9"  # admin, but only of hr: reaches the document and evaluation routes
HR_READ = "hr-read-9e27d4"
ADMIN = "all-admin-3b88f1"
SECRET = "The vault combination is 4417-ORCHID"
HR_DOCS = {
    "pto.md": b"# Paid time off\n\nEmployees get 27 days of paid vacation a year, booked in the HR portal.\n",
    "parking.md": b"# Parking\n\nStaff parking is on level P3; visitors use bays 40 to 52.\n",
}
SEC_DOCS = {
    "vault.md": f"# Vault\n\n{SECRET}. Only two officers may open the vault.\n".encode(),
    "badges.md": b"# Badges\n\nSecurity badges expire after 90 days and are renewed at the front desk.\n",
}
GHOST = "ghost"  # no such collection
PLANTED = {"files": ("planted.md", b"# Planted\n\nPlanted text.\n")}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def scoped_settings(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Settings:
    root = tmp_path_factory.mktemp("scoping")
    settings = Settings(
        chroma_path=root / "chroma",
        eval_dir=root / "eval",
        generator="extractive",
        relevance_floor=0.0,
        api_keys=SecretStr(f"{HR_ADMIN}:admin:hr, {HR_READ}:read:hr, {ADMIN}:admin"),
    )
    for collection, docs in (("hr", HR_DOCS), ("sec", SEC_DOCS)):
        ingestor = Ingestor(settings, collection=collection, embedder=embedder)
        for source, data in docs.items():
            assert ingestor.ingest_bytes(data, source=source, root="test").outcome == "added"
    # A kept evaluation report for each collection, as POST /v1/eval leaves them.
    for collection in ("hr", "sec"):
        folder = settings.eval_dir / collection
        folder.mkdir(parents=True)
        (folder / "report.json").write_text(json.dumps({"collection": collection}), encoding="utf-8")
        (folder / "ladder.png").write_bytes(b"\x89PNG\r\n\x1a\n" + collection.encode())
    return settings


@pytest.fixture(scope="module")
def url(scoped_settings: Settings, embedder: Embedder) -> Iterator[str]:
    with serve_app(create_app(scoped_settings, embedder=embedder)) as base:
        yield base


def rest(url: str, method: str, path: str, key: str, **kw: Any) -> httpx.Response:
    return httpx.request(method, f"{url}{path}", headers=bearer(key), timeout=120, **kw)


def doc_id(url: str, collection: str, source: str) -> str:
    listed = rest(url, "GET", "/v1/documents", ADMIN, params={"collection": collection})
    assert listed.status_code == 200, listed.text
    return str(next(d["document_id"] for d in listed.json()["documents"] if d["source"] == source))


# Every route that names a collection: (method, path, request keywords) for collection NAME.
def requests_for(url: str, name: str) -> dict[str, tuple[str, str, dict[str, Any]]]:
    question = "What is the vault combination?"
    chat = {"model": name, "messages": [{"role": "user", "content": question}], "generator": "extractive"}
    gold = [{"question": question, "answerable": True, "sources": ["vault.md"], "facts": ["4417"]}]
    return {
        "search": ("POST", "/v1/search", {"json": {"query": question, "collection": name}}),
        "query": ("POST", "/v1/query", {"json": {"question": question, "collection": name}}),
        "stream": ("POST", "/v1/query", {"json": {"question": question, "collection": name, "stream": True}}),
        "chat": ("POST", "/v1/chat/completions", {"json": chat}),
        "chat-stream": ("POST", "/v1/chat/completions", {"json": {**chat, "stream": True}}),
        "list": ("GET", "/v1/documents", {"params": {"collection": name}}),
        "delete": ("DELETE", "/v1/documents/any-id", {"params": {"collection": name}}),
        "upload": ("POST", "/v1/documents", {"files": PLANTED, "data": {"collection": name}}),
        "eval": ("POST", "/v1/eval", {"json": {"questions": gold, "collection": name}}),
        "eval-latest": ("GET", "/v1/eval/latest", {"params": {"collection": name}}),
        "eval-chart": ("GET", "/v1/eval/latest/ladder.png", {"params": {"collection": name}}),
    }


SURFACES = list(requests_for("", "x"))


def outcome(response: httpx.Response, name: str) -> tuple[int, str]:
    """Status and body with the collection's name taken out, to compare two names' answers."""
    return response.status_code, response.text.replace(f"'{name}'", "'NAME'")


@pytest.mark.parametrize("surface", SURFACES)
def test_a_limited_key_meets_other_collections_as_missing_ones(url: str, surface: str) -> None:
    method, path, sec_kw = requests_for(url, "sec")[surface]
    _, _, ghost_kw = requests_for(url, GHOST)[surface]
    limited_sec = rest(url, method, path, HR_ADMIN, **sec_kw)
    limited_ghost = rest(url, method, path, HR_ADMIN, **ghost_kw)
    assert limited_sec.status_code == 404, limited_sec.text
    assert outcome(limited_sec, "sec") == outcome(limited_ghost, GHOST)
    if surface != "upload":  # an upload by an unlimited key creates the collection it names
        admin_ghost = rest(url, method, path, ADMIN, **ghost_kw)
        assert outcome(limited_sec, "sec") == outcome(admin_ghost, GHOST)
    assert "4417" not in limited_sec.text and "vault.md" not in limited_sec.text


def test_the_read_key_is_limited_too(url: str) -> None:
    for surface in ("search", "query", "stream", "chat"):
        method, path, kw = requests_for(url, "sec")[surface]
        response = rest(url, method, path, HR_READ, **kw)
        assert response.status_code == 404, (surface, response.text)
    assert rest(url, "POST", "/v1/search", HR_READ, json={"query": "vacation", "collection": "hr"}).is_success


def test_chat_errors_keep_openai_shape(url: str) -> None:
    method, path, kw = requests_for(url, "sec")["chat"]
    error = rest(url, method, path, HR_ADMIN, **kw).json()["error"]
    assert error["code"] == 404 and error["type"] == "UnknownCollection"
    assert error["message"] == "collection 'sec' does not exist"


def test_a_limited_key_writes_nothing_outside_its_collections(url: str) -> None:
    before = rest(url, "GET", "/v1/documents", ADMIN, params={"collection": "sec"}).json()["documents"]
    vault = doc_id(url, "sec", "vault.md")
    gone = rest(url, "DELETE", f"/v1/documents/{vault}", HR_ADMIN, params={"collection": "sec"})
    assert gone.status_code == 404, gone.text
    for target in ("sec", "brand-new"):  # an upload would create brand-new: not for this key
        up = rest(url, "POST", "/v1/documents", HR_ADMIN, files=PLANTED, data={"collection": target})
        assert up.status_code == 404, up.text
    after = rest(url, "GET", "/v1/documents", ADMIN, params={"collection": "sec"}).json()["documents"]
    assert after == before
    names = [c["name"] for c in rest(url, "GET", "/v1/collections", ADMIN).json()["collections"]]
    assert sorted(names) == ["hr", "sec"]


def test_a_limited_key_uses_its_own_collection_fully(url: str) -> None:
    files = {"files": ("canteen.md", b"# Canteen\n\nThe canteen opens at 11:30 on weekdays.\n")}
    up = rest(url, "POST", "/v1/documents", HR_ADMIN, files=files, data={"collection": "hr"})
    assert up.status_code == 200 and up.json()["files"][0]["outcome"] == "added", up.text
    canteen = doc_id(url, "hr", "canteen.md")
    gone = rest(url, "DELETE", f"/v1/documents/{canteen}", HR_ADMIN, params={"collection": "hr"})
    assert gone.status_code == 200, gone.text
    latest = rest(url, "GET", "/v1/eval/latest", HR_ADMIN, params={"collection": "hr"})
    assert latest.status_code == 200 and latest.json() == {"collection": "hr"}
    chart = rest(url, "GET", "/v1/eval/latest/ladder.png", HR_ADMIN, params={"collection": "hr"})
    assert chart.status_code == 200 and chart.content.endswith(b"hr")


def test_answers_from_its_collection_carry_nothing_of_another(url: str) -> None:
    question = "What is the vault combination?"
    hr_sources = set(HR_DOCS)
    found = rest(url, "POST", "/v1/search", HR_READ, json={"query": question, "collection": "hr"}).json()
    answer = rest(url, "POST", "/v1/query", HR_READ, json={"question": question, "collection": "hr"}).json()
    chat = rest(url, "POST", "/v1/chat/completions", HR_READ, json={
        "model": "hr", "messages": [{"role": "user", "content": question}], "generator": "extractive",
    }).json()  # fmt: skip
    with httpx.stream(
        "POST", f"{url}/v1/query", headers=bearer(HR_READ), timeout=120,
        json={"question": question, "collection": "hr", "stream": True},
    ) as stream:  # fmt: skip
        events = "".join(stream.iter_text())
    assert "event: answer" in events
    assert {r["source"] for r in found["results"]} <= hr_sources
    for body in (answer, chat):
        assert {s["source"] for s in body["sources"]} <= hr_sources
        assert {c["source"] for c in body["citations"]} <= hr_sources
    for text in (json.dumps(found), json.dumps(answer), json.dumps(chat), events):
        assert "4417" not in text and "vault.md" not in text and "badges.md" not in text


def test_listings_show_only_the_keys_collections(url: str) -> None:
    def names(key: str) -> tuple[list[str], list[str]]:
        listed = rest(url, "GET", "/v1/collections", key).json()["collections"]
        models = rest(url, "GET", "/v1/models", key).json()["data"]
        return sorted(c["name"] for c in listed), sorted(m["id"] for m in models)

    assert names(HR_READ) == (["hr"], ["hr"])
    assert names(ADMIN) == (["hr", "sec"], ["hr", "sec"])
    me = rest(url, "GET", "/v1/whoami", HR_READ).json()
    assert me == {"role": "read", "keys_required": True, "collections": ["hr"]}
    assert rest(url, "GET", "/v1/whoami", ADMIN).json()["collections"] is None


def test_an_unlimited_key_still_sees_both(url: str) -> None:
    for collection, question, source in (
        ("hr", "How many days of paid vacation?", "pto.md"),
        ("sec", "What is the vault combination?", "vault.md"),
    ):
        body = rest(url, "POST", "/v1/query", ADMIN, json={"question": question, "collection": collection})
        assert body.status_code == 200, body.text
        assert body.json()["sources"][0]["source"] == source
    latest = rest(url, "GET", "/v1/eval/latest", ADMIN, params={"collection": "sec"})
    assert latest.status_code == 200 and latest.json() == {"collection": "sec"}


# -- MCP ----------------------------------------------------------------------------------------


def mcp_calls(url: str, key: str, calls: list[tuple[str, dict[str, Any]]]) -> list[CallToolResult]:
    async def main() -> list[CallToolResult]:
        http = httpx2.AsyncClient(headers=bearer(key), timeout=httpx2.Timeout(30, read=120))
        async with http, Client(streamable_http_client(f"{url}/mcp", http_client=http)) as client:
            return [await client.call_tool(tool, arguments) for tool, arguments in calls]

    return anyio.run(main)


def text_of(result: CallToolResult) -> str:
    assert len(result.content) == 1 and isinstance(result.content[0], TextContent), result.content
    return result.content[0].text


def test_mcp_tools_are_limited_the_same_way(url: str) -> None:
    question = "What is the vault combination?"

    def calls(name: str) -> list[tuple[str, dict[str, Any]]]:
        return [
            ("search", {"query": question, "collection": name}),
            ("ask", {"question": question, "collection": name, "generator": "extractive"}),
        ]

    limited_sec = mcp_calls(url, HR_READ, calls("sec"))
    limited_ghost = mcp_calls(url, HR_READ, calls(GHOST))
    admin_ghost = mcp_calls(url, ADMIN, calls(GHOST))
    for a, b, c in zip(limited_sec, limited_ghost, admin_ghost, strict=True):
        assert a.is_error and b.is_error and c.is_error
        sec_text = text_of(a).replace("'sec'", "'NAME'")
        ghost_texts = {text_of(r).replace(f"'{GHOST}'", "'NAME'") for r in (b, c)}
        assert ghost_texts == {sec_text}
        assert "does not exist" in sec_text and "4417" not in sec_text

    listed, found, asked = mcp_calls(url, HR_READ, [
        ("list_collections", {}),
        ("search", {"query": question, "collection": "hr"}),
        ("ask", {"question": question, "collection": "hr", "generator": "extractive"}),
    ])  # fmt: skip
    assert [c["name"] for c in listed.structured_content["collections"]] == ["hr"]
    assert "sec" not in text_of(listed)
    assert {r["source"] for r in found.structured_content["results"]} <= set(HR_DOCS)
    assert {s["source"] for s in asked.structured_content["sources"]} <= set(HR_DOCS)
    for result in (found, asked):
        assert "4417" not in text_of(result) and "vault.md" not in text_of(result)

    (everything,) = mcp_calls(url, ADMIN, [("list_collections", {})])
    assert sorted(c["name"] for c in everything.structured_content["collections"]) == ["hr", "sec"]


# -- the key format -------------------------------------------------------------------------------


def test_limited_keys_parse() -> None:
    assert parse_api_keys("k1:admin, k2:read:hr|legal ,with:colon:read:hr") == {
        "k1": ApiKey("admin"),
        "k2": ApiKey("read", frozenset({"hr", "legal"})),
        "with:colon": ApiKey("read", frozenset({"hr"})),
    }
    assert parse_api_keys("k0:read, k:read:hr")["k"].entry == 2


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("secret-one:read:bad name", "invalid collection name 'bad name'"),
        ("secret-one:read:", "names no collections"),
        ("secret-one:read:|", "names no collections"),
        ("secret-one:read:admin", "reads both as"),
        ("secret-one:owner:hr", "role 'hr'"),
    ],
)
def test_bad_limited_keys_fail_at_load_without_the_key(bad: str, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        Settings(_env_file=None, api_keys=SecretStr(bad))  # type: ignore[call-arg]
    assert message in str(info.value)
    assert "secret-one" not in str(info.value)


# -- the rate limit -------------------------------------------------------------------------------


def test_the_bucket_refills_at_the_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(per_minute=30, clock=lambda: now[0])  # one token every 2 s
    for _ in range(30):
        limiter.check("key 1")
    with pytest.raises(RateLimited) as info:
        limiter.check("key 1")
    assert info.value.retry_after_s == 2
    limiter.check("key 2")  # each caller has its own bucket
    now[0] = 1.5
    with pytest.raises(RateLimited) as info:
        limiter.check("key 1")
    assert info.value.retry_after_s == 1
    now[0] = 2.0
    limiter.check("key 1")
    now[0] = 1000.0  # a long pause refills to the burst size, no more
    for _ in range(30):
        limiter.check("key 1")
    with pytest.raises(RateLimited):
        limiter.check("key 1")


def limited_app(settings: Settings, embedder: Embedder, *, keyed: bool) -> TestClient:
    update: dict[str, Any] = {"rate_limit_per_minute": 60}  # bursts of 60, then one a second
    if not keyed:
        update["api_keys"] = None
    return TestClient(create_app(settings.model_copy(update=update), embedder=embedder))


@pytest.mark.parametrize("keyed", [True, False], ids=["per-key", "open-per-client"])
def test_over_the_limit_is_429_with_retry_after_then_recovers(
    scoped_settings: Settings, embedder: Embedder, keyed: bool
) -> None:
    headers = bearer(HR_READ) if keyed else {}
    with limited_app(scoped_settings, embedder, keyed=keyed) as client:
        served, started = 0, time.monotonic()
        while (response := client.get("/v1/whoami", headers=headers)).status_code == 200:
            served += 1
            assert served < 1000
        # The burst, and what refilled (one a second) while it was spent on this busy machine.
        assert 60 <= served <= 61 + (time.monotonic() - started)
        assert response.status_code == 429, response.text
        assert response.headers["retry-after"] == "1"
        assert response.json()["error"] == "RateLimited"
        assert "RAG_RATE_LIMIT_PER_MINUTE" in response.json()["detail"]
        if keyed:  # another key has a bucket of its own
            assert client.get("/v1/whoami", headers=bearer(ADMIN)).status_code == 200
        for path in ("/healthz", "/readyz", "/metrics"):
            assert client.get(path).status_code == 200, path
        time.sleep(1.1)
        assert client.get("/v1/whoami", headers=headers).status_code == 200


def test_every_surface_counts_against_the_limit(scoped_settings: Settings, embedder: Embedder) -> None:
    with limited_app(scoped_settings, embedder, keyed=True) as client:
        # The same limiter with its clock stopped, so that nothing refills while the surfaces are tried.
        client.app.state.runtime.limiter = RateLimiter(60, clock=lambda: 0.0)  # type: ignore[attr-defined]
        for _ in range(60):
            assert client.get("/v1/whoami", headers=bearer(HR_READ)).status_code == 200
        for surface, (method, path, kw) in requests_for("", "hr").items():
            response = client.request(method, path, headers=bearer(HR_READ), **kw)
            assert response.status_code == 429, (surface, response.text)
            assert response.headers["retry-after"] == "1"
        models = client.get("/v1/models", headers=bearer(HR_READ))
        assert models.status_code == 429 and models.json()["error"]["code"] == 429  # OpenAI's shape there
        mcp = client.post("/mcp", json={}, headers=bearer(HR_READ))
        assert mcp.status_code == 429 and mcp.headers["retry-after"] == "1"
        assert client.get("/v1/whoami", headers=bearer(ADMIN)).status_code == 200
