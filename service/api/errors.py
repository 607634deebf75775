"""The only table from errors to HTTP statuses, and the one handler that applies it."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ingest.errors import (
    EmbedBackendError,
    EmbedderMismatch,
    IngestError,
    InvalidCollectionName,
    StoreError,
    UnknownCollection,
    UnknownDocument,
)
from service.answer import GeneratorFailed
from service.errors import (
    BadRequest,
    Forbidden,
    GeneratorError,
    GeneratorTimeout,
    GeneratorUnavailable,
    IndexNotReady,
    NotFound,
    RagError,
    RateLimited,
    Unauthorized,
)

# Looked up along the exception's MRO, so a subclass takes its nearest listed ancestor's status.
STATUS: dict[type[Exception], int] = {
    BadRequest: 400,
    Unauthorized: 401,
    NotFound: 404,
    Forbidden: 403,
    RateLimited: 429,
    InvalidCollectionName: 400,
    UnknownCollection: 404,
    UnknownDocument: 404,
    EmbedderMismatch: 409,
    # The server cannot embed at all (an export it cannot make or load): not the request's fault.
    EmbedBackendError: 503,
    IngestError: 422,
    StoreError: 503,
    IndexNotReady: 503,
    GeneratorUnavailable: 503,
    GeneratorError: 503,
    GeneratorTimeout: 504,
    RagError: 500,
}


def status_for(exc: Exception) -> int:
    target = exc.cause if isinstance(exc, GeneratorFailed) else exc
    for cls in type(target).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_body(exc: Exception) -> dict[str, Any]:
    """``{detail, error, status}``, and the sources when a generator failed after retrieval: the body
    of an error response, of an SSE ``error`` event and of a chat stream's error."""
    body: dict[str, Any] = {"detail": str(exc), "error": type(exc).__name__, "status": status_for(exc)}
    if isinstance(exc, GeneratorFailed):
        from service.api.schemas import SourceOut

        body["error"] = type(exc.cause).__name__
        body["sources"] = [SourceOut.of(s).model_dump() for s in exc.sources]
    return body


# OpenAI clients read an error's message from {"error": {"message": ...}}: the chat routes answer so.
OPENAI_PATHS = ("/v1/chat/", "/v1/models")
# Names of the statuses the framework and the request middleware answer with themselves.
HTTP_ERROR_NAMES = {400: "BadRequest", 404: "NotFound", 405: "MethodNotAllowed", 408: "RequestTimeout",
                    413: "PayloadTooLarge"}  # fmt: skip


def shaped(path: str, body: dict[str, Any], status: int) -> dict[str, Any]:
    """An error body ``{detail, error, ...}`` as ``path`` answers it: in OpenAI's shape on the chat routes."""
    if path.startswith(OPENAI_PATHS):
        return {**body, "error": {"message": body["detail"], "type": body["error"], "code": status}}
    return body


async def rag_error_handler(request: Request, exc: Exception) -> JSONResponse:
    body = error_body(exc)
    status = body.pop("status")
    body = shaped(request.url.path, body, status)
    headers: dict[str, str] = {}
    if status == 401:  # RFC 6750: a 401 names the scheme the client should use.
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(exc.retry_after_s)
    return JSONResponse(body, status_code=status, headers=headers or None)


async def http_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """The framework's own errors (a body that is not JSON, an unknown path, a body over the limit or
    too slow to arrive) in the same ``{detail, error}`` shape as every other error."""
    assert isinstance(exc, StarletteHTTPException)
    name = HTTP_ERROR_NAMES.get(exc.status_code) or HTTPStatus(exc.status_code).phrase.replace(" ", "")
    body = shaped(request.url.path, {"detail": str(exc.detail), "error": name}, exc.status_code)
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RagError, rag_error_handler)
    app.add_exception_handler(IngestError, rag_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
