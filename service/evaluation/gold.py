"""The gold set: questions with the sources that answer them and the facts a correct answer holds.

One JSON object per line (``corpus/eval/questions.jsonl`` is the sample company's)::

    {"id": "q001", "kind": "direct", "question": "How many vacation days do I get?",
     "answerable": true, "sources": ["hr/pto-policy.md"], "facts": ["25 days"], "avoid": []}

``facts`` entries are strings or lists of alternatives (any one suffices), matched as substrings
after :func:`service.evaluation.metrics.normalise`. ``avoid`` holds strings that only a wrong
(superseded) document says: an answer containing one is wrong even if it has the facts.
``answerable: false`` questions have no sources and no facts; the right answer is to abstain.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.evaluation.metrics import Fact

KINDS = ("direct", "paraphrase", "multi", "superseded", "unanswerable")


class GoldSetError(ValueError):
    """A gold set line is not valid; the message names the file and line."""


@dataclass(frozen=True)
class GoldQuestion:
    id: str
    question: str
    answerable: bool
    sources: tuple[str, ...] = ()
    facts: tuple[Fact, ...] = ()
    avoid: tuple[str, ...] = ()
    kind: str = "direct"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "question": self.question,
            "answerable": self.answerable,
            "sources": list(self.sources),
            "avoid": list(self.avoid),
            "facts": [f if isinstance(f, str) else list(f) for f in self.facts],
        }


def parse_question(raw: Any, *, where: str = "question") -> GoldQuestion:
    """One gold question from its JSON object.

    :raises GoldSetError: a missing or mistyped field, or an answerable question without sources.
    """
    if not isinstance(raw, dict):
        raise GoldSetError(f"{where}: expected a JSON object")
    question = raw.get("question")
    if not isinstance(question, str) or not question.strip():
        raise GoldSetError(f"{where}: 'question' must be a non-empty string")
    answerable = raw.get("answerable", True)
    if not isinstance(answerable, bool):
        raise GoldSetError(f"{where}: 'answerable' must be true or false")
    sources = _strings(raw.get("sources", []), "sources", where)
    avoid = _strings(raw.get("avoid", []), "avoid", where)
    facts: list[Fact] = []
    for fact in raw.get("facts", []) or []:
        if isinstance(fact, str) and fact.strip():
            facts.append(fact)
        elif isinstance(fact, list) and fact and all(isinstance(a, str) and a.strip() for a in fact):
            facts.append(tuple(fact))
        else:
            raise GoldSetError(f"{where}: each fact must be a string or a list of alternative strings")
    if answerable and not sources:
        raise GoldSetError(f"{where}: an answerable question needs 'sources'")
    if not answerable and (sources or facts):
        raise GoldSetError(f"{where}: an unanswerable question has no sources and no facts")
    kind = str(raw.get("kind") or ("direct" if answerable else "unanswerable"))
    if kind not in KINDS:
        raise GoldSetError(f"{where}: kind {kind!r} is not one of {', '.join(KINDS)}")
    return GoldQuestion(
        id=str(raw.get("id") or where),
        question=question.strip(),
        answerable=answerable,
        sources=tuple(sources),
        facts=tuple(facts),
        avoid=tuple(avoid),
        kind=kind,
    )


def _strings(value: Any, name: str, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise GoldSetError(f"{where}: {name!r} must be a list of strings")
    return value


def load_gold(path: Path) -> list[GoldQuestion]:
    """Every question of a JSONL gold set; blank lines and lines starting with ``//`` are skipped.

    :raises GoldSetError: unreadable file, bad JSON, an invalid question, or a repeated id.
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise GoldSetError(f"cannot read gold set {path}: {exc}") from exc
    out: list[GoldQuestion] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("//"):
            continue
        where = f"{path}:{number}"
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise GoldSetError(f"{where}: not JSON ({exc.msg})") from exc
        out.append(parse_question(raw, where=where))
    return check_unique(out, str(path))


def check_unique(questions: Sequence[GoldQuestion], where: str) -> list[GoldQuestion]:
    seen: set[str] = set()
    for q in questions:
        if q.id in seen:
            raise GoldSetError(f"{where}: id {q.id!r} is used twice")
        seen.add(q.id)
    if not questions:
        raise GoldSetError(f"{where}: the gold set holds no questions")
    return list(questions)


@dataclass
class GoldSummary:
    total: int
    by_kind: dict[str, int] = field(default_factory=dict)


def summarise(questions: Sequence[GoldQuestion]) -> GoldSummary:
    summary = GoldSummary(len(questions))
    for q in questions:
        summary.by_kind[q.kind] = summary.by_kind.get(q.kind, 0) + 1
    return summary
