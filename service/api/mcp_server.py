"""The MCP server at ``/mcp`` (streamable HTTP): the tools ``search``, ``ask`` and ``list_collections``
over the same code, keys and roles as the HTTP API.

``mount_mcp(app)`` adds the ``/mcp`` route and returns the endpoint; the app's lifespan runs
``endpoint.run()`` so the SDK's session manager lives exactly as long as the ``Runtime``. The transport
is stateless with JSON responses: every request stands alone, so any worker or replica can answer it.
Before the SDK sees a request, its ``Origin`` (when a browser sent one) must be in ``RAG_CORS_ORIGINS``
and, when ``RAG_API_KEYS`` is set, it must carry ``Authorization: Bearer KEY`` (any role: all tools
are read-level), and it counts against the key's rate limit. The caller found there rides on the
request to the tools, which let a key limited to some collections see only those, as the HTTP API
does. Retrieval and generation run in worker threads, never on the event loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, TypeVar

import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ingest.errors import IngestError
from ingest.store import list_collections as store_collections
from service.answer import GeneratorFailed, answer_question, check_question, check_top_k
from service.api.deps import Caller, admit
from service.api.errors import rag_error_handler
from service.api.schemas import (
    CitationOut,
    CollectionList,
    CollectionOut,
    QueryResponse,
    SearchResponse,
    SourceOut,
)
from service.errors import Forbidden, RagError, RateLimited, Unauthorized
from service.metrics import Metrics
from service.retrieve import NO_FILTERS
from service.runtime import Runtime
from service.types import Source

MCP_PATH = "/mcp"
# Where McpEndpoint leaves the caller on the request (``request.state``) for the tools to read.
CALLER_STATE = "ragfirst_caller"
INSTRUCTIONS = (
    "Answers questions from the company's own documents. Use `ask` for a question: its answer cites "
    "numbered sources, and every citation has been checked against the passage it quotes. Use `search` "
    "to read passages themselves, and `list_collections` to see which document collections exist."
)
_READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)
_T = TypeVar("_T")

Question = Annotated[str, Field(description="The question, in plain words.")]
Query = Annotated[str, Field(description="What to look for.")]
Collection = Annotated[str, Field(description="The document collection (see list_collections).")]
TopK = Annotated[int, Field(description="How many passages, 1 to RAG_MAX_TOP_K (50 by default).")]
GeneratorName = Annotated[
    str | None,
    Field(description="local, openai or extractive (sentences quoted from the sources); the service's "
          "RAG_GENERATOR when unset."),
]  # fmt: skip


def build_server(runtime: Callable[[], Runtime], metrics: Callable[[], Metrics]) -> MCPServer:
    """The MCP server and its three tools; ``runtime`` and ``metrics`` are read at each call, so
    the tools use the objects the app's lifespan built."""
    server: MCPServer = MCPServer("ragfirst", version="0.1.0", instructions=INSTRUCTIONS)

    @server.tool(title="Search the documents", annotations=_READ_ONLY)
    async def search(
        ctx: Context, query: Query, collection: Collection = "default", top_k: TopK = 5
    ) -> Annotated[CallToolResult, SearchResponse]:
        """Passages from the documents for a query, best first (dense and keyword search fused), each
        with its source path, title, section, page and score. The same results as POST /v1/search."""
        rt, m, caller = runtime(), metrics(), _caller(ctx)

        def run() -> SearchResponse:
            text = check_question(query, rt.settings)
            k = check_top_k(top_k, rt.settings)
            found = rt.retriever(caller.check(collection)).search(text, k, NO_FILTERS)
            m.observe_stages(found.timings_ms)
            return SearchResponse(
                results=[SourceOut.of(s) for s in found.sources], timings_ms=found.timings_ms
            )

        response = await _in_thread(run)
        return _result(_passages_text(response.results), response)

    @server.tool(title="Ask the documents", annotations=_READ_ONLY)
    async def ask(
        ctx: Context, question: Question, collection: Collection = "default", generator: GeneratorName = None
    ) -> Annotated[CallToolResult, QueryResponse]:
        """Answer a question from the documents, citing sources as [n]. Every citation is verified
        against the passage it quotes; sentences that fail are removed. "The documents do not cover
        this." when nothing relevant is found. The same answer as POST /v1/query."""
        rt, m, caller = runtime(), metrics(), _caller(ctx)

        def run() -> QueryResponse:
            settings = rt.settings
            check_question(question, settings)
            retriever = rt.retriever(caller.check(collection))
            chosen = rt.generator(generator)
            with m.counting_failures():
                answer = answer_question(
                    question, ctx=rt.context, retriever=retriever, generator=chosen, collection=collection
                )
            m.observe_answer(answer)
            return QueryResponse.of(answer)

        response = await _in_thread(run)
        return _result(_answer_text(response), response)

    @server.tool(title="List the collections", annotations=_READ_ONLY)
    async def list_collections(ctx: Context) -> Annotated[CallToolResult, CollectionList]:
        """The document collections, with how many documents and chunks each holds. The same list as
        GET /v1/collections."""
        rt, caller = runtime(), _caller(ctx)

        def run() -> CollectionList:
            out = []
            for name in caller.visible(store_collections(rt.settings)):
                docs = rt.store(name).documents()
                out.append(CollectionOut(name=name, documents=len(docs), chunks=sum(d.chunks for d in docs)))
            return CollectionList(collections=out)

        found = await _in_thread(run)
        text = "\n".join(f"{c.name}: {c.documents} documents, {c.chunks} chunks" for c in found.collections)
        return _result(text or "No collections yet.", found)

    return server


class McpEndpoint:
    """The ASGI app at ``/mcp``: the origin and key checks, then the SDK's session manager."""

    def __init__(self, app: Starlette) -> None:
        self._app = app
        self.server = build_server(lambda: app.state.runtime, lambda: app.state.metrics)
        self.route = Route(MCP_PATH, endpoint=self, name="mcp", include_in_schema=False)
        self._manager: StreamableHTTPSessionManager | None = None

    @asynccontextmanager
    async def run(self) -> AsyncIterator[None]:
        """Run the session manager; entered by the app's lifespan, after the runtime is built.

        A session manager runs once, so each lifespan gets a new one."""
        self.server.streamable_http_app(
            streamable_http_path=MCP_PATH,
            stateless_http=True,
            json_response=True,
            # The SDK's Host check allows only localhost names, which would refuse the service behind
            # any other name; the Origin check in __call__ is what stops DNS rebinding.
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )
        manager = self.server.session_manager
        async with manager.run():
            self._manager = manager
            try:
                yield
            finally:
                self._manager = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # FastAPI names only its own routes in the scope; the access log and metrics read it.
        scope.setdefault("route", self.route)
        manager = self._manager
        if manager is None:
            body = {"detail": "the MCP server is not running (app lifespan not started)", "error": "NotReady"}
            await JSONResponse(body, status_code=503)(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            self._check_origin(request)
            caller = admit(request)  # every role reaches the read level all three tools need
        except (Unauthorized, Forbidden, RateLimited) as exc:
            await (await rag_error_handler(request, exc))(scope, receive, send)
            return
        # The SDK hands the tools a Request over this same scope, so they find the caller on it.
        setattr(request.state, CALLER_STATE, caller)
        await manager.handle_request(scope, receive, send)

    def _check_origin(self, request: Request) -> None:
        """A browser's request must come from an origin in ``RAG_CORS_ORIGINS`` (MCP requires servers
        to check ``Origin``, against DNS rebinding); clients that are not browsers send none."""
        origin = request.headers.get("origin")
        allowed = self._app.state.runtime.settings.cors_origins
        if origin and "*" not in allowed and origin not in allowed:
            raise Forbidden(f"origin {origin!r} is not allowed: add it to RAG_CORS_ORIGINS")


def mount_mcp(app: Starlette) -> McpEndpoint:
    """Add ``/mcp`` to ``app`` (every method, no trailing-slash redirect) and return the endpoint,
    whose ``run()`` the app's lifespan must enter."""
    endpoint = McpEndpoint(app)
    app.router.routes.append(endpoint.route)
    return endpoint


def _caller(ctx: Context) -> Caller:
    """The caller McpEndpoint admitted for this tool call.

    :raises ToolError: none is there (a transport that skipped McpEndpoint): refuse rather than
        answer as an unlimited caller.
    """
    request = ctx.request_context.request
    caller = getattr(getattr(request, "state", None), CALLER_STATE, None)
    if not isinstance(caller, Caller):
        raise ToolError("this call did not pass the API key check")
    return caller


async def _in_thread(fn: Callable[[], _T]) -> _T:
    """Run blocking work in a worker thread; the service's own errors become tool errors (the caller
    sees ``isError`` and the message), anything else the SDK reports as a failed call."""
    try:
        return await anyio.to_thread.run_sync(fn)
    except GeneratorFailed as exc:
        raise ToolError(f"{exc}\n{_sources_text(exc.sources)}") from exc
    except (RagError, IngestError) as exc:
        raise ToolError(str(exc)) from exc


def _result(text: str, structured: SearchResponse | QueryResponse | CollectionList) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=text)], structured_content=structured.model_dump(mode="json")
    )


def _where(title: str, section: str, page: int | None) -> str:
    parts = [p for p in (title, section) if p]
    where = " › ".join(parts)
    return f"{where} (p. {page})" if page is not None else where


def _passages_text(results: list[SourceOut]) -> str:
    if not results:
        return "No passages found."
    return "\n\n".join(
        f"[{s.n}] {s.source} — {_where(s.title, s.section, s.page)} (score {s.score:.3f})\n{s.text}"
        for s in results
    )


def _answer_text(response: QueryResponse) -> str:
    cited: dict[int, CitationOut] = {}
    for c in response.citations:
        cited.setdefault(c.n, c)
    if not cited:
        return response.answer
    lines = [f"[{n}] {c.source} — {_where(c.title, c.section, c.page)}" for n, c in sorted(cited.items())]
    return response.answer + "\n\nSources:\n" + "\n".join(lines)


def _sources_text(sources: list[Source]) -> str:
    if not sources:
        return "No sources were retrieved."
    lines = [f"[{s.n}] {s.source} — {_where(s.title, s.section, s.page)}" for s in sources]
    return "Sources retrieved before it failed:\n" + "\n".join(lines)
