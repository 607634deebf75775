"""The one seam every generator implements."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from service.types import Generation, Prompt

# A model that starts writing another source block or question has finished its answer; small models
# otherwise run on, copying the prompt back until max_tokens.
STOP = ["<source", "</source>", "\nQuestion:", "\nSources:"]


def accept_delta(parts: list[str], delta: str | None) -> str | None:
    """Record a streamed text delta in ``parts`` and return it, or None when there is nothing to send.

    Leading whitespace of the answer is dropped, as ``generate`` strips it.
    """
    if delta and not parts:
        delta = delta.lstrip()
    if not delta:
        return None
    parts.append(delta)
    return delta


class Generator(Protocol):
    """Writes an answer from a prompt. Implementations: local (llama.cpp), openai (HTTP), extractive.

    ``stream`` yields text deltas and, last, the complete :class:`Generation` (with token counts).
    Both raise :class:`service.errors.GeneratorTimeout` / :class:`GeneratorUnavailable` on failure.
    """

    name: str
    model: str
    context_tokens: int

    def generate(self, prompt: Prompt, *, max_tokens: int) -> Generation: ...

    def stream(self, prompt: Prompt, *, max_tokens: int) -> Iterator[str | Generation]: ...

    def count_tokens(self, text: str) -> int: ...
