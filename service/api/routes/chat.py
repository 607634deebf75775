"""OpenAI-compatible chat: ``POST /v1/chat/completions`` and ``GET /v1/models``, so Open WebUI,
LibreChat and the ``openai`` SDK use ragfirst as a model whose name is a collection.

A thin layer over the one path to an answer (``service.answer``): the conversation becomes a
standalone question (``service.chat``), the answer is verified as on ``/v1/query``, and its text
keeps the ``[n]`` markers and ends with the cited sources; the structured citations ride in the
extra fields ``citations``, ``sources`` and ``ragfirst``.

Streaming sends OpenAI's ``chat.completion.chunk`` events ending with ``data: [DONE]``. Only verified
text is streamed: the role comes at once, the answer once verification has checked it, so a chat
window never shows a sentence that strict mode would remove.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from ingest.store import list_collections
from service.answer import answer_question
from service.api.deps import CallerDep, MetricsDep, RuntimeDep
from service.api.errors import error_body
from service.api.schemas import (
    ChatChoice,
    ChatCompletion,
    ChatErrorOut,
    ChatMessageOut,
    ChatRequest,
    ChatUsage,
    CitationOut,
    ModelList,
    ModelOut,
    RagfirstInfo,
    SourceOut,
)
from service.chat import Turn, chat_text, conversation, standalone_question, text_of
from service.errors import RagError
from service.metrics import Metrics
from service.retrieve import Filters
from service.types import Answer

router = APIRouter(prefix="/v1", tags=["chat"])
# Streamed answers go out in pieces of about this many characters, split at spaces.
CHUNK_CHARS = 48


@router.get("/models", response_model=ModelList)
def models(runtime: RuntimeDep, caller: CallerDep) -> ModelList:
    """Every collection the key may see, as a model to pick in a chat client."""
    names = caller.visible(list_collections(runtime.settings))
    return ModelList(data=[ModelOut(id=name) for name in names])


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    responses={
        **{code: {"model": ChatErrorOut} for code in (400, 404, 503, 504)},
        200: {"content": {"text/event-stream": {}}, "description": "JSON, or SSE chunks with stream"},
    },
)
async def chat_completions(
    body: ChatRequest, caller: CallerDep, runtime: RuntimeDep, metrics: MetricsDep
) -> Any:
    """Answer the conversation's last user message from the collection named by ``model``."""
    collection = caller.check(body.model)
    question, history = conversation([Turn(m.role, text_of(m.content)) for m in body.messages])
    filters = Filters.parse(body.filters)
    retriever = runtime.retriever(collection)
    generator = runtime.generator(body.generator)

    def answer() -> tuple[str, Answer]:
        asked = standalone_question(question, history, generator)
        return asked.text, answer_question(
            asked.question, ctx=runtime.context, retriever=retriever, generator=generator,
            collection=collection, top_k=body.top_k, filters=filters, context=asked.context,
        )  # fmt: skip

    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    if not body.stream:
        standalone, result = await run_in_threadpool(_observed, answer, metrics)
        return _completion(completion_id, collection, standalone, result)
    return StreamingResponse(
        _chunks(completion_id, collection, answer, metrics),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _observed(answer: Callable[[], tuple[str, Answer]], metrics: Metrics) -> tuple[str, Answer]:
    with metrics.counting_failures():
        standalone, result = answer()
    metrics.observe_answer(result)
    return standalone, result


def _completion(completion_id: str, collection: str, standalone: str, a: Answer) -> ChatCompletion:
    return ChatCompletion(
        id=completion_id, created=int(time.time()), model=collection,
        choices=[ChatChoice(message=ChatMessageOut(content=chat_text(a)))],
        usage=ChatUsage(prompt_tokens=a.prompt_tokens, completion_tokens=a.completion_tokens,
                        total_tokens=a.prompt_tokens + a.completion_tokens),
        citations=[CitationOut.of(c) for c in a.citations], sources=[SourceOut.of(s) for s in a.sources],
        ragfirst=RagfirstInfo(question=standalone, covered=a.covered, generator=a.generator,
                              fallback=a.fallback, removed=a.removed),
    )  # fmt: skip


async def _chunks(
    completion_id: str, collection: str, answer: Callable[[], tuple[str, Answer]], metrics: Metrics
) -> AsyncIterator[str]:
    created = int(time.time())

    def chunk(delta: dict[str, str], finish: str | None = None, **extra: Any) -> str:
        body = {
            "id": completion_id, "object": "chat.completion.chunk", "created": created, "model": collection,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra,
        }  # fmt: skip
        return f"data: {json.dumps(body)}\n\n"

    yield chunk({"role": "assistant"})
    try:
        standalone, result = await run_in_threadpool(_observed, answer, metrics)
    except RagError as exc:
        body = error_body(exc)
        # OpenAI's shape, which its SDK raises as an APIError; the sources still come along.
        error = {"message": body["detail"], "type": body["error"], "code": body["status"], **body}
        yield f"data: {json.dumps({'error': error})}\n\n"
        yield "data: [DONE]\n\n"
        return
    full = _completion(completion_id, collection, standalone, result)
    for piece in _pieces(full.choices[0].message.content):
        yield chunk({"content": piece})
    extra = full.model_dump(include={"usage", "citations", "sources", "ragfirst"})
    yield chunk({}, "stop", **extra)
    yield "data: [DONE]\n\n"


def _pieces(text: str) -> list[str]:
    """``text`` in pieces of about ``CHUNK_CHARS``, split after spaces; joined, they are ``text``."""
    pieces, current = [], ""
    for part in re.split(r"(?<= )", text):
        current += part
        if len(current) >= CHUNK_CHARS:
            pieces.append(current)
            current = ""
    if current:
        pieces.append(current)
    return pieces
