"""The MCP server at /mcp, through the official ``mcp`` SDK client over streamable HTTP against the
running service (a real socket): the tools and their schemas, search, ask, list_collections, tool
errors, keys, and ``ask`` saying what POST /v1/query and the chat endpoint say."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import anyio
import httpx
import httpx2
import openai
import pytest
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, TextContent

from ingest.embed import Embedder
from ingest.settings import Settings
from service.api.app import create_app
from tests.conftest import LIVE_ADMIN_KEY, LIVE_READ_KEY, free_port, serve_app

pytestmark = pytest.mark.slow
OFFICE_DAYS = "How many days per week must employees be in the office?"
MODES = ["auto", "legacy"]  # auto: 2026-07-28 per-request; legacy: the initialize handshake clients use today
_T = TypeVar("_T")


def with_client(
    live_url: str, use: Callable[[Client], Awaitable[_T]], *, key: str = LIVE_READ_KEY, mode: str = "auto"
) -> _T:
    """Connect the SDK's client to ``/mcp`` with ``Authorization: Bearer key`` and run ``use`` on it."""

    async def main() -> _T:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=300))
        async with http, Client(streamable_http_client(f"{live_url}/mcp", http_client=http), mode=mode) as c:
            return await use(c)

    return anyio.run(main)


def call(live_url: str, tool: str, arguments: dict[str, Any], **kw: Any) -> CallToolResult:
    async def use(c: Client) -> CallToolResult:
        return await c.call_tool(tool, arguments)

    return with_client(live_url, use, **kw)


def text_of(result: CallToolResult) -> str:
    assert len(result.content) == 1 and isinstance(result.content[0], TextContent), result.content
    return result.content[0].text


@pytest.mark.parametrize("mode", MODES)
def test_lists_the_three_tools_with_their_schemas(live_url: str, mode: str) -> None:
    async def use(c: Client) -> Any:
        return await c.list_tools()

    tools = {t.name: t for t in with_client(live_url, use, mode=mode).tools}
    assert set(tools) == {"search", "ask", "list_collections"}

    search = tools["search"].input_schema
    assert search["required"] == ["query"]
    assert search["properties"]["query"]["type"] == "string"
    assert search["properties"]["collection"]["type"] == "string"
    assert search["properties"]["collection"]["default"] == "default"
    assert search["properties"]["top_k"]["type"] == "integer"
    assert search["properties"]["top_k"]["default"] == 5

    ask = tools["ask"].input_schema
    assert ask["required"] == ["question"]
    assert set(ask["properties"]) == {"question", "collection", "generator"}
    assert ask["properties"]["generator"]["default"] is None
    assert {"type": "string"} in ask["properties"]["generator"]["anyOf"]

    assert tools["list_collections"].input_schema["properties"] == {}
    for tool in tools.values():
        assert tool.description and tool.annotations and tool.annotations.read_only_hint is True
        assert tool.output_schema and tool.output_schema["type"] == "object"
    assert {"answer", "citations", "sources", "covered"} <= set(tools["ask"].output_schema["properties"])
    assert "results" in tools["search"].output_schema["properties"]


@pytest.mark.parametrize("mode", MODES)
def test_search_finds_the_current_policy_first(live_url: str, mode: str) -> None:
    result = call(live_url, "search", {"query": OFFICE_DAYS, "top_k": 3}, mode=mode)
    assert not result.is_error, result.content
    passages = result.structured_content["results"]
    assert 1 <= len(passages) <= 3
    assert passages[0]["source"] == "hr/remote-work-policy-2025.md"
    for p in passages:
        assert {"source", "title", "section", "page", "text", "score"} <= set(p)
    text = text_of(result)
    assert text.startswith("[1] hr/remote-work-policy-2025.md")
    assert passages[0]["text"] in text


def test_ask_answers_with_verified_citations(live_url: str) -> None:
    result = call(live_url, "ask", {"question": OFFICE_DAYS, "generator": "extractive"})
    assert not result.is_error, result.content
    body = result.structured_content
    assert body["covered"] is True and body["generator"] == "extractive"
    assert body["citations"], body
    assert all(c["verified"] for c in body["citations"])
    sources = {s["n"]: s for s in body["sources"]}
    for c in body["citations"]:
        assert c["quote"] in sources[c["n"]]["text"]
    assert "hr/remote-work-policy-2025.md" in {c["source"] for c in body["citations"]}
    # The text block: the answer, then the cited sources.
    answer, _, listing = text_of(result).partition("\n\nSources:\n")
    assert answer == body["answer"]
    for c in body["citations"]:
        assert f"[{c['n']}] {c['source']}" in listing


def test_lists_the_collections_with_counts(live_url: str) -> None:
    result = call(live_url, "list_collections", {})
    assert not result.is_error, result.content
    default = next(c for c in result.structured_content["collections"] if c["name"] == "default")
    assert default["documents"] > 0 and default["chunks"] > 0
    assert f"default: {default['documents']} documents, {default['chunks']} chunks" in text_of(result)


@pytest.mark.parametrize(
    ("tool", "arguments", "message"),
    [
        ("search", {"query": OFFICE_DAYS, "collection": "no-such-collection"}, "'no-such-collection'"),
        ("ask", {"question": OFFICE_DAYS, "collection": "no-such-collection"}, "'no-such-collection'"),
        ("ask", {"question": "   ", "generator": "extractive"}, "question is empty"),
        ("ask", {"question": OFFICE_DAYS, "generator": "bogus"}, "unknown generator 'bogus'"),
        ("search", {"query": OFFICE_DAYS, "top_k": 0}, "top_k must be between 1"),
        ("ask", {"question": OFFICE_DAYS, "collection": "../etc"}, "invalid collection name"),
    ],
    ids=["search-unknown-collection", "ask-unknown-collection", "empty", "generator", "top-k", "bad-name"],
)
def test_bad_calls_are_tool_errors(live_url: str, tool: str, arguments: dict[str, Any], message: str) -> None:
    result = call(live_url, tool, arguments)
    assert result.is_error
    assert message in text_of(result)


def test_an_unconfigured_generator_is_a_tool_error(live_url: str) -> None:
    result = call(live_url, "ask", {"question": OFFICE_DAYS, "generator": "openai"})
    assert result.is_error
    assert "RAG_LLM_BASE_URL" in text_of(result)


@pytest.fixture(scope="module")
def open_url(corpus_settings: Settings, embedder: Embedder) -> Iterator[str]:
    """The service over corpus/ without keys, its openai generator pointed at a port nobody serves."""
    settings = corpus_settings.model_copy(
        update={"llm_base_url": f"http://127.0.0.1:{free_port()}/v1", "llm_retries": 0}
    )
    with serve_app(create_app(settings, embedder=embedder)) as url:
        yield url


def test_a_generator_that_is_down_is_a_tool_error_with_the_sources(open_url: str) -> None:
    result = call(open_url, "ask", {"question": OFFICE_DAYS, "generator": "openai"}, key="")
    assert result.is_error
    text = text_of(result)
    assert "cannot reach LLM endpoint" in text
    assert "Sources retrieved before it failed:" in text and "hr/remote-work-policy-2025.md" in text


def test_without_keys_no_key_is_needed(open_url: str) -> None:
    response = httpx.post(f"{open_url}/mcp", json=INITIALIZE, headers=MCP_HEADERS, timeout=30)
    assert response.status_code == 200, response.text


INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "test", "version": "0"},
    },
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream"}


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-key", LIVE_READ_KEY, f"Basic {LIVE_READ_KEY}"],
    ids=["missing", "wrong", "no-scheme", "basic"],
)
def test_missing_and_wrong_keys_get_401(live_url: str, authorization: str | None) -> None:
    headers = MCP_HEADERS | ({"Authorization": authorization} if authorization else {})
    response = httpx.post(f"{live_url}/mcp", json=INITIALIZE, headers=headers, timeout=30)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"] == "Unauthorized"


@pytest.mark.parametrize("key", [LIVE_READ_KEY, LIVE_ADMIN_KEY], ids=["read", "admin"])
def test_read_and_admin_keys_get_in(live_url: str, key: str) -> None:
    headers = MCP_HEADERS | {"Authorization": f"Bearer {key}"}
    response = httpx.post(f"{live_url}/mcp", json=INITIALIZE, headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    assert response.json()["result"]["serverInfo"]["name"] == "ragfirst"


def test_a_wrong_key_fails_the_sdk_client_too(live_url: str) -> None:
    async def use(c: Client) -> Any:
        return await c.list_tools()

    # The SDK reports the 401 as an MCPError (-32603), inside the task groups' ExceptionGroups.
    with pytest.raises(BaseException) as caught:
        with_client(live_url, use, key="wrong-key", mode="legacy")
    assert any(isinstance(e, MCPError) for e in leaves(caught.value)), caught.value


def leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]


def test_a_foreign_browser_origin_is_refused(live_url: str) -> None:
    headers = MCP_HEADERS | {"Authorization": f"Bearer {LIVE_READ_KEY}", "Origin": "http://evil.example"}
    response = httpx.post(f"{live_url}/mcp", json=INITIALIZE, headers=headers, timeout=30)
    assert response.status_code == 403, response.text
    assert "RAG_CORS_ORIGINS" in response.json()["detail"]


def test_rest_chat_and_mcp_give_the_same_answer(live_url: str) -> None:
    """One path to an answer: POST /v1/query, the chat endpoint and MCP's ask say the same."""
    question = "How many weeks of fully paid parental leave do eligible parents get?"
    mcp = call(live_url, "ask", {"question": question, "generator": "extractive"})
    assert not mcp.is_error, mcp.content
    http = httpx.post(
        f"{live_url}/v1/query",
        json={"question": question, "generator": "extractive"},
        headers={"Authorization": f"Bearer {LIVE_READ_KEY}"},
        timeout=300,
    )
    assert http.status_code == 200, http.text
    body, via_mcp = http.json(), mcp.structured_content
    assert via_mcp["answer"] == body["answer"]
    assert via_mcp["citations"], via_mcp

    def cited(b: dict[str, Any]) -> set[tuple[int, str, str]]:
        return {(c["n"], c["source"], c["quote"]) for c in b["citations"]}

    assert cited(via_mcp) == cited(body)
    assert [s["source"] for s in via_mcp["sources"]] == [s["source"] for s in body["sources"]]

    chat = openai.OpenAI(base_url=f"{live_url}/v1", api_key=LIVE_READ_KEY, max_retries=0, timeout=300)
    completion = chat.chat.completions.create(
        model="default",
        messages=[{"role": "user", "content": question}],
        extra_body={"generator": "extractive"},
    )
    via_chat = completion.model_extra or {}
    text = completion.choices[0].message.content or ""
    assert text.partition("\n\nSources:\n")[0] == body["answer"]
    assert cited(via_chat) == cited(body)
    assert [s["source"] for s in via_chat["sources"]] == [s["source"] for s in body["sources"]]


def test_requests_are_counted_under_the_mcp_route(live_url: str) -> None:
    call(live_url, "list_collections", {})
    metrics = httpx.get(f"{live_url}/metrics", timeout=30).text
    assert 'route="/mcp"' in metrics
