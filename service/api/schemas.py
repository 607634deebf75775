"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ingest.settings import Settings
from ingest.types import FileOutcome, IndexedDocument
from service.types import Answer, Citation, Source


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")



class SearchRequest(Strict):
    query: str = Field(description="What to look for.")
    collection: str = "default"
    top_k: int = Field(default=5, description="How many passages (1 to RAG_MAX_TOP_K).")
    filters: dict[str, Any] | None = Field(
        default=None, description="source_prefix (str), filetype (str or list), tags (str or list)."
    )


class SourceOut(BaseModel):
    n: int
    chunk_id: str
    chunk_ids: list[str]
    document_id: str
    source: str
    title: str
    section: str
    page: int | None
    text: str
    start: int
    end: int
    score: float

    @classmethod
    def of(cls, s: Source) -> SourceOut:
        return cls(
            n=s.n, chunk_id=s.chunk_ids[0], chunk_ids=list(s.chunk_ids), document_id=s.document_id,
            source=s.source, title=s.title, section=s.section, page=s.page, text=s.text,
            start=s.start, end=s.end, score=s.score,
        )  # fmt: skip


class SearchResponse(BaseModel):
    results: list[SourceOut]
    timings_ms: dict[str, float]


class QueryRequest(Strict):
    question: str
    collection: str = "default"
    top_k: int | None = Field(default=None, description="Passages to retrieve; RAG_TOP_K when unset.")
    filters: dict[str, Any] | None = None
    stream: bool = Field(default=False, description="Server-Sent Events: sources, deltas, answer.")
    generator: str | None = Field(default=None, description="local, openai or extractive.")
    strict: bool | None = Field(default=None, description="Drop unverified sentences (RAG_STRICT_CITATIONS).")
    debug: bool = Field(default=False, description="Return the prompt exactly as the model saw it.")


class CitationOut(BaseModel):
    n: int
    sentence: str
    source: str
    title: str
    section: str
    page: int | None
    quote: str
    start: int
    end: int
    score: float
    verified: bool
    reason: str

    @classmethod
    def of(cls, c: Citation) -> CitationOut:
        return cls(**{name: getattr(c, name) for name in cls.model_fields})


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int


class QueryResponse(BaseModel):
    answer: str
    covered: bool
    citations: list[CitationOut]
    sources: list[SourceOut]
    usage: Usage
    model: str
    generator: str
    fallback: bool = Field(
        description="True when strict mode replaced the model's text with extracted sentences."
    )
    removed: list[str] = Field(description="Sentences dropped because their citations failed verification.")
    timings_ms: dict[str, float]
    prompt: str | None = None

    @classmethod
    def of(cls, a: Answer) -> QueryResponse:
        return cls(
            answer=a.answer, covered=a.covered, citations=[CitationOut.of(c) for c in a.citations],
            sources=[SourceOut.of(s) for s in a.sources],
            usage=Usage(prompt_tokens=a.prompt_tokens, completion_tokens=a.completion_tokens),
            model=a.model, generator=a.generator, fallback=a.fallback, removed=a.removed,
            timings_ms=a.timings_ms, prompt=a.prompt,
        )  # fmt: skip


class DocumentOut(BaseModel):
    document_id: str
    source: str
    title: str
    filetype: str
    chunks: int
    indexed_at: str

    @classmethod
    def of(cls, d: IndexedDocument) -> DocumentOut:
        return cls(**{name: getattr(d, name) for name in cls.model_fields})


class DocumentList(BaseModel):
    collection: str
    documents: list[DocumentOut]


class UploadOutcome(BaseModel):
    source: str
    outcome: str
    reason: str
    chunks: int

    @classmethod
    def of(cls, f: FileOutcome) -> UploadOutcome:
        return cls(source=f.source, outcome=f.outcome, reason=f.reason, chunks=f.chunks)


class UploadResponse(BaseModel):
    collection: str
    files: list[UploadOutcome]


class CollectionOut(BaseModel):
    name: str
    documents: int
    chunks: int


class CollectionList(BaseModel):
    collections: list[CollectionOut]


class Deleted(BaseModel):
    deleted: DocumentOut


class Health(BaseModel):
    status: str
    checks: dict[str, str] = {}


class ErrorOut(BaseModel):
    detail: str
    error: str
    sources: list[SourceOut] | None = None


class EvalRequest(Strict):
    questions: list[dict[str, Any]] = Field(
        description="Gold questions as in a gold set file: question, answerable, sources, facts, avoid."
    )
    collection: str = "default"
    generators: list[str] | None = Field(
        default=None, description="Ladders to run; RAG_GENERATOR when unset."
    )
    top_k: int | None = None
    price_prompt_per_million: float = Field(default=0.0, ge=0)
    price_completion_per_million: float = Field(default=0.0, ge=0)


class WhoAmI(BaseModel):
    role: str = Field(description="read or admin")
    keys_required: bool = Field(description="False when the API is open (no RAG_API_KEYS).")
    collections: list[str] | None = Field(
        default=None, description="The only collections this key may use; null: every one."
    )


# -- OpenAI-compatible chat (``/v1/chat/completions``, ``/v1/models``) --------------------------------


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(BaseModel):
    """OpenAI's chat request. Sampling fields clients send (temperature, top_p, ...) are accepted and
    ignored; ``generator``, ``top_k`` and ``filters`` are ragfirst's own (``extra_body`` in the SDK)."""

    model_config = ConfigDict(extra="ignore")
    model: str = Field(description="The collection to answer from (GET /v1/models lists them).")
    messages: list[ChatMessageIn]
    stream: bool = False
    generator: str | None = None
    top_k: int | None = None
    filters: dict[str, Any] | None = None


class ChatMessageOut(BaseModel):
    role: str = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int = 0
    message: ChatMessageOut
    finish_reason: str = "stop"


class ChatUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class RagfirstInfo(BaseModel):
    """What the answer went through: the question retrieval saw, and how verification fared."""

    question: str
    covered: bool
    generator: str
    fallback: bool
    removed: list[str]


class ChatCompletion(BaseModel):
    id: str
    object: str = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: ChatUsage
    citations: list[CitationOut]
    sources: list[SourceOut]
    ragfirst: RagfirstInfo


class ModelOut(BaseModel):
    id: str
    object: str = "model"
    created: int = 0
    owned_by: str = "ragfirst"


class ModelList(BaseModel):
    object: str = "list"
    data: list[ModelOut]


class ChatError(BaseModel):
    message: str
    type: str
    code: int


class ChatErrorOut(BaseModel):
    """An error of the chat routes: OpenAI's ``error`` object, which its SDK raises as an APIError."""

    detail: str
    error: ChatError
    sources: list[SourceOut] | None = None


# -- what the routes check themselves, stated in the OpenAPI document ---------------------------------

_STRINGS = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
# What ``service.retrieve.Filters.parse`` accepts.
FILTERS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"source_prefix": {"type": "string"}, "filetype": _STRINGS, "filetypes": _STRINGS,
                   "tags": _STRINGS},
    "additionalProperties": False,
}  # fmt: skip
CHAT_ROLES = ["system", "developer", "user", "assistant", "tool"]


def document_limits(openapi: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """``openapi`` with the limits the routes check themselves, with a 400 and a message of their own:
    collection names, non-blank questions of at most RAG_MAX_QUESTION_CHARS, top_k from 1 to
    RAG_MAX_TOP_K, the filters there are, the generators this service has, at most
    RAG_MAX_EVAL_QUESTIONS gold questions. They are stated here rather than enforced by the models,
    so that breaking one keeps its 400 and its message (a model would answer 422)."""
    from ingest.settings import COLLECTION_NAME

    generators = ["local", "extractive", *(["openai"] if settings.llm_base_url else [])]
    collection = {"pattern": COLLECTION_NAME.pattern}
    # A character that str.strip() keeps: ECMA's \S alone lets through \x1c-\x1f and \x85.
    question = {"pattern": r"[^\s\x1c-\x1f\x85]", "maxLength": settings.max_question_chars}
    top_k = {"minimum": 1, "maximum": settings.max_top_k}
    limits: dict[str, dict[str, dict[str, Any]]] = {
        "SearchRequest": {"collection": collection, "query": question, "top_k": top_k,
                          "filters": FILTERS_SCHEMA},
        "QueryRequest": {"collection": collection, "question": question, "top_k": top_k,
                         "filters": FILTERS_SCHEMA, "generator": {"enum": generators}},
        "ChatRequest": {"model": collection, "top_k": top_k, "filters": FILTERS_SCHEMA,
                        "generator": {"enum": generators}, "messages": {"minItems": 1}},
        "ChatMessageIn": {"role": {"enum": CHAT_ROLES}},
        "EvalRequest": {"collection": collection, "top_k": top_k,
                        "questions": {"minItems": 1, "maxItems": settings.max_eval_questions},
                        "generators": {"items": {"type": "string", "enum": generators}}},
        "Body_upload_v1_documents_post": {"collection": collection, "files": {"minItems": 1}},
    }  # fmt: skip
    schemas = openapi.get("components", {}).get("schemas", {})
    for model, fields in limits.items():
        properties = schemas.get(model, {}).get("properties", {})
        for name, extra in fields.items():
            if name in properties:
                _constrain(properties[name], extra)
    for path in openapi.get("paths", {}).values():
        for operation in path.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("name") == "collection" and parameter.get("in") == "query":
                    _constrain(parameter["schema"], collection)
    return openapi


def _constrain(schema: dict[str, Any], extra: dict[str, Any]) -> None:
    """Add ``extra`` to a property's schema, or to its non-null branch when it may be null; an object
    schema replaces the branch (``filters``: any object, as the model has it, becomes the known keys)."""
    branches = [b for b in schema.get("anyOf", []) if b.get("type") != "null"]
    target = branches[0] if len(branches) == 1 else schema
    if extra.get("type") == "object":
        target.clear()
    target.update(extra)
