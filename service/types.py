"""What flows from a question to an answer: sources, the prompt, the generation, citations."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Source:
    """A retrieved passage, numbered ``n`` (from 1) as the prompt shows it.

    ``start``/``end`` are character offsets of ``text`` in its document's text; merged neighbouring
    chunks give one source spanning all of them.
    """

    n: int
    chunk_ids: tuple[str, ...]
    document_id: str
    source: str
    title: str
    section: str
    page: int | None
    text: str
    start: int
    end: int
    score: float
    filetype: str = ""
    superseded: bool = False


@dataclass(frozen=True)
class Prompt:
    """Chat messages for the model, with the question and the sources they were built from."""

    question: str
    messages: list[dict[str, str]]
    sources: list[Source]
    # A follow-up's earlier user turns (``service.chat``): retrieval searched with them before the
    # question, and the extractive generator weighs them in; empty when the question stands alone.
    context: str = ""

    def as_text(self) -> str:
        """The whole prompt as one readable text, for ``debug`` responses."""
        return "\n\n".join(f"### {m['role']}\n{m['content']}" for m in self.messages)


@dataclass(frozen=True)
class Generation:
    """What a generator wrote, with token counts as the model (or an estimate) reports them."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    model: str
    generator: str


@dataclass(frozen=True)
class Citation:
    """One ``[n]`` marker of the answer, checked against the passage it names.

    ``quote`` is ``document text[start:end]``: the span of source ``n`` that supports ``sentence``.
    """

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
    reason: str = ""


@dataclass
class Answer:
    """The service's answer to a question."""

    answer: str
    citations: list[Citation]
    sources: list[Source]
    covered: bool
    generator: str
    model: str
    fallback: bool = False
    removed: list[str] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    timings_ms: dict[str, float] = field(default_factory=dict)
    prompt: str | None = None
