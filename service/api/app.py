"""The FastAPI application: ``create_app(settings)`` builds it; heavy objects live in the lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from ingest.embed import Embedder
from ingest.settings import Settings, get_settings
from service.api.deps import ADMIN, READ
from service.api.errors import install_error_handlers
from service.api.mcp_server import mount_mcp
from service.api.middleware import REQUEST_ID_HEADER, RequestMiddleware
from service.api.routes import chat, collections, documents, evaluation, health, query, search, web, whoami
from service.api.schemas import ChatErrorOut, ErrorOut, document_limits
from service.logs import configure_logging
from service.metrics import Metrics
from service.runtime import Runtime

log = logging.getLogger("ragfirst.app")


def create_app(settings: Settings | None = None, *, embedder: Embedder | None = None) -> FastAPI:
    """The ASGI app. Models are not loaded here: the embedder and generators load on first use.

    :param embedder: an already built embedder to share (a test session, a bench run).
    """
    settings = settings or get_settings()
    configure_logging(settings.log_format, settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.runtime = Runtime(settings, embedder=embedder)
        if not app.state.runtime.keys:
            log.warning(
                "RAG_API_KEYS is not set: the API is OPEN, and anyone who can reach it may read, upload "
                "and delete documents. Set RAG_API_KEYS=KEY:admin,KEY2:read before exposing it."
            )
        async with mcp.run():  # the MCP session manager, inside the app's lifespan
            yield

    app = FastAPI(
        title="ragfirst",
        version="0.1.0",
        summary="Answers from your own documents, with citations checked against their sources.",
        lifespan=lifespan,
    )
    app.state.metrics = Metrics()
    install_error_handlers(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            # The last two let a browser MCP client speak streamable HTTP to /mcp.
            allow_headers=[
                "authorization",
                "content-type",
                REQUEST_ID_HEADER,
                "mcp-protocol-version",
                "mcp-session-id",
            ],
            expose_headers=[REQUEST_ID_HEADER],
        )
    # Added last, so it is the outermost layer: its request id and size limit cover CORS and errors too.
    app.add_middleware(
        RequestMiddleware,
        metrics=app.state.metrics,
        max_body_bytes=settings.max_request_bytes,
        body_timeout_s=settings.request_body_timeout_s,
        min_body_rate=settings.request_min_bytes_per_s,
    )
    # What any guarded route may answer besides its own: a body that is not JSON or a collection name
    # that cannot be one (400), no key or too weak a key, a body too slow (408) or too large (413).
    codes = (400, 401, 403, 408, 413)
    guarded: dict[int | str, dict[str, Any]] = {code: {"model": ErrorOut} for code in codes}
    for module in (search, query, collections, whoami):
        app.include_router(module.router, dependencies=[READ], responses=guarded)
    app.include_router(
        chat.router, dependencies=[READ], responses={code: {"model": ChatErrorOut} for code in codes}
    )
    for module in (documents, evaluation):
        app.include_router(module.router, dependencies=[ADMIN], responses=guarded)
    app.include_router(health.router)
    app.include_router(web.router)
    app.mount("/static", web.static_files(), name="static")
    mcp = mount_mcp(app)  # /mcp: the MCP server over streamable HTTP, behind the same keys

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_limits(FastAPI.openapi(app), settings)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
