"""Build the prompt: system instructions, few-shot examples, and the numbered, fenced sources.

Instructions and examples are files a user edits without touching code: ``system.md`` and
``examples.json`` in ``RAG_PROMPT_DIR`` (the packaged ``service/prompts/`` by default), with
per-collection overrides in ``RAG_PROMPT_DIR/collections/NAME/``. They are read once, at startup;
a missing or malformed file stops the service from starting.

Source text is data: it sits inside ``<source>`` tags, with anything in it that could close or open
such a tag neutralised (tag look-alikes, chat-template tokens such as ``<|im_start|>``, lines that
start like the prompt's own ``Question:``), its ``[n]`` look-alikes shown as ``(n)``, and each of its
sentences that reads as an order to the assistant withheld (:mod:`service.injection`), so no document
can step outside its fence or rewrite the instructions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.injection import neutralise, neutralise_markers, withhold
from service.types import Prompt, Source

PACKAGED = Path(__file__).parent / "prompts"
NOT_COVERED = "The documents do not cover this."


class PromptConfigError(ValueError):
    """A prompt file is missing or malformed; raised at startup, never in a request."""


@dataclass(frozen=True)
class Example:
    question: str
    sources: list[dict[str, str]]
    answer: str


@dataclass(frozen=True)
class PromptFiles:
    system: str
    examples: list[Example]


def _read_files(folder: Path, fallback: PromptFiles | None) -> PromptFiles:
    system_path, examples_path = folder / "system.md", folder / "examples.json"
    if fallback is None and not system_path.is_file():
        raise PromptConfigError(f"missing system prompt file {system_path}")
    system = system_path.read_text(encoding="utf-8").strip() if system_path.is_file() else ""
    examples = fallback.examples if fallback else []
    if examples_path.is_file():
        try:
            raw: Any = json.loads(examples_path.read_text(encoding="utf-8"))
            examples = [
                Example(str(e["question"]), [dict(s) for s in e["sources"]], str(e["answer"])) for e in raw
            ]
        except (ValueError, KeyError, TypeError) as exc:
            raise PromptConfigError(f"malformed examples file {examples_path}: {exc}") from exc
    elif fallback is None:
        raise PromptConfigError(f"missing examples file {examples_path}")
    return PromptFiles(system or (fallback.system if fallback else ""), examples)


def fence(text: str) -> str:
    """Text with tag look-alikes, template tokens, prompt framing and ``[n]`` markers defused, so it
    cannot close its fence or pass for a citation."""
    return neutralise_markers(neutralise(text))


def source_text(text: str) -> str:
    """A retrieved passage as the prompt shows it: fenced, and without its orders to the assistant.

    Only retrieved text is withheld from: the few-shot examples show the model an order it ignores.
    """
    return fence(withhold(text))


def _attr(value: object) -> str:
    return source_text(str(value)).replace('"', "'").replace("\n", " ")


def format_sources(sources: Sequence[Source | dict[str, str]]) -> str:
    blocks = []
    for i, src in enumerate(sources, start=1):
        if isinstance(src, Source):
            attrs = {"id": src.n, "title": src.title, "section": src.section, "page": src.page,
                     "status": "superseded" if src.superseded else None}  # fmt: skip
            text = source_text(src.text)
        else:
            attrs = {"id": i, "title": src.get("title", ""), "section": src.get("section", ""),
                     "status": src.get("status")}  # fmt: skip
            text = fence(src.get("text", ""))
        rendered = " ".join(f'{k}="{_attr(v)}"' for k, v in attrs.items() if v not in (None, ""))
        blocks.append(f"<source {rendered}>\n{text}\n</source>")
    return "\n".join(blocks)


def user_message(question: str, sources: Sequence[Source | dict[str, str]]) -> str:
    # The asker is no document, but their question must not open a chat turn of its own either.
    return f"Sources:\n{format_sources(sources)}\n\nQuestion: {neutralise(question.strip())}"


class PromptSet:
    """The prompt files for every collection, loaded once.

    Example::

        prompts = PromptSet.load(settings.prompt_dir)
        prompt = prompts.build("How many vacation days?", sources, collection="default",
                               count_tokens=generator.count_tokens, budget=3000)
    """

    def __init__(self, default: PromptFiles, per_collection: dict[str, PromptFiles]) -> None:
        self.default = default
        self.per_collection = per_collection

    @classmethod
    def load(cls, folder: Path | None = None) -> PromptSet:
        """:raises PromptConfigError: a prompt file is missing or malformed."""
        base = _read_files(PACKAGED, None)
        if folder is not None:
            if not folder.is_dir():
                raise PromptConfigError(f"RAG_PROMPT_DIR {folder} is not a folder")
            base = _read_files(folder, base)
        overrides = {}
        collections = (folder / "collections") if folder else None
        if collections and collections.is_dir():
            for sub in sorted(p for p in collections.iterdir() if p.is_dir()):
                overrides[sub.name] = _read_files(sub, base)
        return cls(base, overrides)

    def files_for(self, collection: str) -> PromptFiles:
        return self.per_collection.get(collection, self.default)

    def build(
        self,
        question: str,
        sources: list[Source],
        *,
        collection: str,
        count_tokens: Any,
        budget: int,
        with_system: bool = True,
        with_examples: bool = True,
    ) -> Prompt:
        """Messages for ``question`` with as many sources as fit ``budget`` tokens, best first.

        Examples are dropped (last first) before the best source would be; a single source that is
        still too long is cut to fit.
        """
        files = self.files_for(collection)
        head: list[dict[str, str]] = []
        if with_system:
            head.append({"role": "system", "content": files.system})
        examples = list(files.examples) if with_examples else []

        def size(messages: list[dict[str, str]]) -> int:
            return messages_tokens(messages, count_tokens)

        fixed = size(head) + int(count_tokens(question)) + 16
        while examples and fixed + size(few_shot_messages(examples)) > budget // 2:
            examples.pop()
        room = budget - fixed - size(few_shot_messages(examples))
        kept: list[Source] = []
        for src in sources:
            cost = int(count_tokens(src.text)) + 24
            if cost <= room:
                kept.append(src)
                room -= cost
            elif not kept and room > 32:
                share = max(1, int(len(src.text) * (room - 24) / cost))
                kept.append(_cut(src, share))
                room = 0
            else:
                break
        messages = [
            *head,
            *few_shot_messages(examples),
            {"role": "user", "content": user_message(question, kept)},
        ]
        return Prompt(question=question, messages=messages, sources=kept)

    def closed_book(
        self, question: str, *, collection: str, with_system: bool, with_examples: bool
    ) -> Prompt:
        """A prompt with no sources: the question alone, optionally after the system instructions
        and the few-shot examples. The evaluation ladder's first rungs, which show what the model
        does before retrieval."""
        files = self.files_for(collection)
        head = [{"role": "system", "content": files.system}] if with_system else []
        shots = few_shot_messages(files.examples) if with_examples else []
        return Prompt(question, [*head, *shots, {"role": "user", "content": question.strip()}], [])


def messages_tokens(messages: Sequence[dict[str, str]], count_tokens: Any) -> int:
    """Tokens of chat messages: their text, and about four a message for the role and separators."""
    return sum(int(count_tokens(m["content"])) + 4 for m in messages)


def few_shot_messages(examples: Sequence[Example]) -> list[dict[str, str]]:
    """Each example as a user turn (its sources and question) and the assistant's answer."""
    out = []
    for ex in examples:
        out.append({"role": "user", "content": user_message(ex.question, ex.sources)})
        out.append({"role": "assistant", "content": ex.answer})
    return out


def _cut(src: Source, length: int) -> Source:
    from dataclasses import replace

    return replace(src, text=src.text[:length], end=src.start + length)
