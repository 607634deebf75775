from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter
from sse_starlette.sse import EventSourceResponse
from starlette.concurrency import iterate_in_threadpool

from ingest.errors import IngestError
from service.answer import GeneratorFailed, answer_question, check_question, check_top_k, stream_answer
from service.api.deps import CallerDep, MetricsDep, RuntimeDep
from service.api.errors import error_body
from service.api.schemas import ErrorOut, QueryRequest, QueryResponse, SourceOut
from service.errors import RagError
from service.metrics import Metrics
from service.retrieve import Filters
from service.types import Answer

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["query"])
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorOut} for code in (400, 404, 503, 504)}


@router.post(
    "/query",
    response_model=QueryResponse,
    responses={
        **ERRORS,
        200: {"content": {"text/event-stream": {}}, "description": "JSON, or SSE with stream"},
    },
)
def query(body: QueryRequest, caller: CallerDep, runtime: RuntimeDep, metrics: MetricsDep) -> Any:
    """Answer a question from a collection, citing and verifying every claim.

    With ``stream: true`` the response is Server-Sent Events: ``sources`` first, then ``delta``
    events with text, and last ``answer`` (the verified answer, as the JSON response would be) or
    ``error`` (with the sources).
    """
    settings = runtime.settings
    check_question(body.question, settings)
    check_top_k(body.top_k, settings)
    filters = Filters.parse(body.filters)
    retriever = runtime.retriever(caller.check(body.collection))
    generator = runtime.generator(body.generator)
    args: dict[str, Any] = dict(
        ctx=runtime.context, retriever=retriever, generator=generator, collection=body.collection,
        top_k=body.top_k, filters=filters, strict=body.strict, debug=body.debug,
    )  # fmt: skip
    if not body.stream:
        with metrics.counting_failures():
            answer = answer_question(body.question, **args)
        metrics.observe_answer(answer)
        return QueryResponse.of(answer)
    return EventSourceResponse(_events(stream_answer(body.question, **args), metrics), ping=15)


async def _events(events: Any, metrics: Metrics) -> AsyncIterator[dict[str, str]]:
    try:
        async for name, payload in iterate_in_threadpool(events):
            if name == "answer":
                metrics.observe_answer(payload)
            elif name == "error" and isinstance(payload, GeneratorFailed):
                metrics.observe_failure(payload)
            yield {"event": name, "data": json.dumps(_encode(name, payload))}
    except (RagError, IngestError) as exc:
        yield {"event": "error", "data": json.dumps(error_body(exc))}
    except Exception as exc:
        # The response has started: a 500 can no longer be sent, so the stream ends with an error event.
        log.exception("streamed answer failed")
        body = {"detail": f"internal error: {type(exc).__name__}", "error": "InternalError", "status": 500}
        yield {"event": "error", "data": json.dumps(body)}


def _encode(name: str, payload: Any) -> Any:
    if name == "sources":
        return [SourceOut.of(s).model_dump() for s in payload]
    if name == "delta":
        return {"text": payload}
    if name == "answer":
        assert isinstance(payload, Answer)
        return QueryResponse.of(payload).model_dump()
    return error_body(payload)
