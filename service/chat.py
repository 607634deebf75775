"""Conversations for the OpenAI-compatible chat endpoint: the question to answer, and the answer as a
chat window shows it.

A follow-up ("and for contractors?") means little alone, so the question that retrieval and the
prompt see is made standalone from the conversation: an LLM generator rewrites it; the extractive
generator, which cannot write, gets the earlier user turns as the question's context (``Asked``):
retrieval searches with them before the question, but the sentences quoted are ranked mostly by the
question itself, since ranked by all the turns alike the sentence that answered the earlier question
would win again. A client's own system message is dropped: ragfirst's system prompt and examples
always lead, so no client (Open WebUI adds one of its own) can change the instructions the answer is
held to.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

from service.errors import BadRequest, GeneratorError
from service.generate.base import Generator
from service.prompt import NOT_COVERED
from service.types import Answer, Prompt

log = logging.getLogger("ragfirst.chat")

# Earlier user turns kept for retrieval: the topic of a follow-up is rarely further back.
HISTORY_TURNS = 2
REWRITE_TOKENS = 64
REWRITE_SYSTEM = (
    "Rewrite the user's last question as one standalone question that can be understood without the "
    "conversation. Keep every name, number and term. Answer with the question only."
)


@dataclass(frozen=True)
class Turn:
    role: str
    content: str


def text_of(content: object) -> str:
    """A message's text: OpenAI sends a string, or a list of parts of which the text ones count."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text"]
        return "\n".join(parts)
    raise BadRequest("message content must be a string or a list of content parts")


def conversation(messages: Sequence[Turn]) -> tuple[str, list[Turn]]:
    """The last user question and the user and assistant turns before it (system messages dropped).

    :raises BadRequest: no user message, or the conversation does not end with one.
    """
    turns = [t for t in messages if t.role in ("user", "assistant") and t.content.strip()]
    if not turns or turns[-1].role != "user":
        raise BadRequest("the conversation must end with a user message")
    return turns[-1].content.strip(), turns[:-1]


@dataclass(frozen=True)
class Asked:
    """What a chat turn asks: the question, and the earlier user turns it depends on (``context``,
    empty when the question stands alone); see ``service.answer.prepare``."""

    question: str
    context: str = ""

    @property
    def text(self) -> str:
        """The context, then the question: what retrieval searches with, and what the response shows."""
        return f"{self.context} {self.question}" if self.context else self.question


def earlier_questions(history: Sequence[Turn]) -> str:
    """The last :data:`HISTORY_TURNS` user turns before the question, joined."""
    return " ".join([t.content.strip() for t in history if t.role == "user"][-HISTORY_TURNS:])


def combined_question(question: str, history: Sequence[Turn]) -> str:
    """The earlier user turns, then the question, as one question (what an LLM reads when its
    rewrite fails)."""
    return Asked(question, earlier_questions(history)).text


def standalone_question(question: str, history: Sequence[Turn], generator: Generator) -> Asked:
    """The question made standalone (see the module docstring); the question itself without history."""
    if not history:
        return Asked(question)
    if getattr(generator, "needs_sources", False):
        return Asked(question, earlier_questions(history))
    lines = [f"{t.role}: {_strip_sources(t.content)}" for t in history[-2 * HISTORY_TURNS :]]
    ask = "Conversation:\n" + "\n".join(lines) + f"\n\nLast question: {question}"
    prompt = Prompt(
        question, [{"role": "system", "content": REWRITE_SYSTEM}, {"role": "user", "content": ask}], []
    )
    try:
        rewritten = generator.generate(prompt, max_tokens=REWRITE_TOKENS).text.strip().splitlines()
    except GeneratorError as exc:
        log.warning("question rewrite failed (%s); combining the turns instead", exc)
        return Asked(combined_question(question, history))
    candidate = rewritten[0].strip().strip('"') if rewritten else ""
    # A small model may answer instead of rewriting, or echo nothing useful: keep the safe form.
    if not candidate or len(candidate) > 4 * len(question) + 200 or NOT_COVERED in candidate:
        return Asked(combined_question(question, history))
    log.info("follow-up %r rewritten as %r", question, candidate)
    return Asked(candidate)


_SOURCES_BLOCK = re.compile(r"\n+Sources:\n(?:\[\d+\].*(?:\n|$))+\s*$")


def _strip_sources(text: str) -> str:
    """An earlier assistant turn without the sources list this endpoint appended to it."""
    return _SOURCES_BLOCK.sub("", text).strip()


def chat_text(answer: Answer) -> str:
    """The answer with its ``[n]`` markers, then the cited sources, as a chat window shows them."""
    cited = sorted({c.n for c in answer.citations})
    if not cited:
        return answer.answer
    lines = []
    for n in cited:
        src = next((s for s in answer.sources if s.n == n), None)
        if src is None:
            continue
        where = src.source + (f", page {src.page}" if src.page else "")
        heading = " — ".join(part for part in (src.title, src.section) if part)
        lines.append(f"[{n}] {heading} ({where})" if heading else f"[{n}] {where}")
    return answer.answer + "\n\nSources:\n" + "\n".join(lines)
