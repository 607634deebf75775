"""The FastAPI application: ``create_app(settings)`` builds it; heavy objects live in the lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from ingest.embed import Embedder
from ingest.settings import Settings, get_settings
from service.api.errors import install_error_handlers
from service.api.routes import collections, documents, health, query, search
from service.runtime import Runtime


def create_app(settings: Settings | None = None, *, embedder: Embedder | None = None) -> FastAPI:
    """The ASGI app. Models are not loaded here: the embedder and generators load on first use.

    :param embedder: an already built embedder to share (a test session, a bench run).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.runtime = Runtime(settings or get_settings(), embedder=embedder)
        yield

    app = FastAPI(
        title="ragfirst",
        version="0.1.0",
        summary="Answers from your own documents, with citations checked against their sources.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    for module in (search, query, documents, collections, health):
        app.include_router(module.router)
    return app
