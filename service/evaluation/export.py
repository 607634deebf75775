"""``rag-eval export``: the gold set and the verified answers as fine-tuning data.

Each line is one training example in the chat format that OpenAI's, Together's, Fireworks' and most
open trainers (TRL, Axolotl) take::

    {"messages": [{"role": "system", ...}, ...few-shot turns..., {"role": "user", "content": "Sources: ..."},
                  {"role": "assistant", "content": "Employees get 25 days of paid vacation [1]."}]}

or, with ``--format prompt-completion``, ``{"prompt": "...", "completion": "..."}``. The prompt is
exactly what the service sends the model, so a model trained on it learns the route it will run in.
Only answers that are right are written: an answerable question's verified answer when it holds every
gold fact, and the "not covered" answer for a question the documents do not answer. The rest are
counted as skipped, for a person to write by hand.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from service.answer import finish, prepare
from service.evaluation.gold import GoldQuestion
from service.evaluation.run import Progress, judge
from service.prompt import NOT_COVERED
from service.runtime import Runtime

Format = Literal["chat", "prompt-completion"]


@dataclass
class ExportReport:
    written: int = 0
    skipped: list[str] = field(default_factory=list)


def export_examples(
    questions: Sequence[GoldQuestion],
    *,
    runtime: Runtime,
    collection: str,
    generator: str | None,
    out: Path,
    fmt: Format = "chat",
    on_progress: Progress | None = None,
) -> ExportReport:
    """Write one training example per question that has a right answer; see the module docstring."""
    report = ExportReport()
    retriever = runtime.retriever(collection)
    model = runtime.generator(generator)
    ctx = runtime.context
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as sink:
        for q in questions:
            prepared = prepare(
                q.question, ctx=ctx, retriever=retriever, generator=model, collection=collection
            )
            prompt = prepared.prompt or ctx.prompts.build(
                prepared.question,
                prepared.retrieval.sources,
                collection=collection,
                count_tokens=model.count_tokens,
                budget=model.context_tokens - ctx.settings.max_answer_tokens,
            )
            if not q.answerable:
                answer = NOT_COVERED
            else:
                if prepared.prompt is None:
                    report.skipped.append(f"{q.id}: below the relevance floor")
                    continue
                generation = model.generate(prompt, max_tokens=ctx.settings.max_answer_tokens)
                checked = finish(prepared, generation, ctx=ctx, strict=True, debug=False, generate_ms=0.0)
                correct, _, _ = judge(q, checked.answer)
                if not correct or not checked.citations:
                    report.skipped.append(f"{q.id}: the verified answer misses a gold fact")
                    continue
                answer = checked.answer
            if fmt == "chat":
                record: dict[str, object] = {
                    "messages": [*prompt.messages, {"role": "assistant", "content": answer}]
                }
            else:
                record = {"prompt": prompt.as_text(), "completion": answer}
            sink.write(json.dumps(record, ensure_ascii=False) + "\n")
            report.written += 1
            if on_progress:
                on_progress(q.id)
    return report
