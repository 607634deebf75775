"""The one ASGI middleware around every request: request id, body size and time limits, access log,
metrics.

Pure ASGI rather than ``BaseHTTPMiddleware``, so streamed responses (SSE) pass through untouched and
the body limits apply while the body arrives, not after it has been buffered.

uvicorn times out idle keep-alive connections but not a body that trickles in: a client sending one
byte a second would hold its request (and a worker thread reading the upload) for as long as it
likes. So the body must arrive by ``started + body_timeout_s + received / min_rate``: a silent
client gets ``body_timeout_s`` seconds, a slow one a little more for each byte it did send, and a
client past that gets 408 with ``Connection: close``. Any response sent before the body was read
to its end closes the connection too, so unread bytes cannot hold it open.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.errors import shaped
from service.logs import request_id
from service.metrics import Metrics

log = logging.getLogger("ragfirst.access")
REQUEST_ID_HEADER = "x-request-id"
# A client's own id is echoed only when it is short and plain, so it cannot forge log lines.
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class RequestMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        max_body_bytes: int,
        body_timeout_s: float = 30.0,
        min_body_rate: float = 1024.0,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body = max_body_bytes
        self.body_timeout = body_timeout_s
        self.min_rate = min_body_rate

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

        declared = headers.get("content-length", "")
        # Whether body bytes may still be on their way (a GET has none; a chunked body ends itself).
        body_pending = (declared.isdigit() and int(declared) > 0) or "chunked" in headers.get(
            "transfer-encoding", ""
        ).lower()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                extra = [(b"x-request-id", rid.encode())]
                if body_pending:  # answered before the body was read: do not wait for the rest
                    extra.append((b"connection", b"close"))
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        received = 0

        async def limited_receive() -> Message:
            nonlocal received, body_pending
            if not body_pending:  # the body is in: what comes now is a disconnect, however late
                return await receive()
            wait = started + self.body_timeout - time.perf_counter()
            if self.min_rate > 0:
                wait += received / self.min_rate
            try:
                message = await asyncio.wait_for(receive(), timeout=max(wait, 0.0))
            except TimeoutError:
                # FastAPI passes an HTTPException raised while reading the body through as it is;
                # any other error there becomes a 400 "error parsing the body".
                raise HTTPException(408, _too_slow(received, self.body_timeout, self.min_rate)) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_pending = bool(message.get("more_body", False))
                if received > limit:
                    raise HTTPException(413, _too_large(limit))
            else:
                body_pending = False
            return message

        try:
            if declared.isdigit() and int(declared) > limit:
                error = {"detail": _too_large(limit), "error": "PayloadTooLarge"}
                body = shaped(str(scope.get("path", "")), error, 413)
                await _send_json(send_with_id, 413, body)
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


def _too_slow(received: int, timeout: float, min_rate: float) -> str:
    return (
        f"request body too slow: {received} bytes arrived, the limit is {timeout:g} s plus one second "
        f"per {min_rate:g} bytes (RAG_REQUEST_BODY_TIMEOUT_S, RAG_REQUEST_MIN_BYTES_PER_S)"
    )


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
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
