"""The one ASGI middleware around every request: request id, body size limit, access log, metrics.

Pure ASGI rather than ``BaseHTTPMiddleware``, so streamed responses (SSE) pass through untouched and
the body limit applies while the body arrives, not after it has been buffered.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.logs import request_id
from service.metrics import Metrics

log = logging.getLogger("ragfirst.access")
REQUEST_ID_HEADER = "x-request-id"
# A client's own id is echoed only when it is short and plain, so it cannot forge log lines.
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class RequestMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: Metrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        given = headers.get(REQUEST_ID_HEADER, "")
        rid = given if _CLIENT_ID.match(given) else uuid.uuid4().hex
        token = request_id.set(rid)
        started = time.perf_counter()
        status = 500
        limit = self.max_body

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # FastAPI passes an HTTPException raised while reading the body through as it is;
                    # any other error there becomes a 400 "error parsing the body".
                    raise HTTPException(413, _too_large(limit))
            return message

        try:
            declared = headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                await _send_json(send_with_id, 413, {"detail": _too_large(limit), "error": "PayloadTooLarge"})
            else:
                await self.app(scope, limited_receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = _route_of(scope)
            method = str(scope.get("method", ""))
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(elapsed)
            log.info(
                "%s %s %d %.1f ms",
                method,
                scope.get("path", ""),
                status,
                elapsed * 1000,
                extra={
                    "method": method,
                    "path": scope.get("path", ""),
                    "route": route,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 1),
                },
            )
            request_id.reset(token)


def _too_large(limit: int) -> str:
    return f"request body is over the {limit / 1024 / 1024:g} MB limit (RAG_MAX_REQUEST_MB)"


def _route_of(scope: Scope) -> str:
    """The route's template (``/v1/documents/{document_id}``), so metrics don't grow a label per id."""
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
