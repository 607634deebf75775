"""The evaluation's outputs: ``report.json`` (everything), ``report.md`` (tables and the "should we
fine-tune?" summary) and ``ladder.png`` (accuracy and prompt tokens per rung)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from service.evaluation.run import RUNGS, Prices, RungSummary

# A rung "improves" on the ones below it only by more than this much accuracy: smaller steps are
# within what a different wording of a few questions moves.
PLATEAU_MARGIN = 0.02
# What the guide says a fine-tune needs before it pays: hundreds of good examples.
EXAMPLES_FOR_FINE_TUNE = 300


@dataclass
class FineTuneSummary:
    """Computed from one generator's ladder; see :func:`fine_tune_summary`."""

    generator: str
    plateau_rung: str
    plateau_accuracy: float
    best_rung: str
    best_accuracy: float
    failures: int
    retrieval_misses: int
    generation_errors: int
    abstention_errors: int
    overhead_tokens: float
    prompt_tokens: float
    overhead_share: float
    overhead_cost_per_million_questions: float
    gold_questions: int
    verdict: str


def fine_tune_summary(
    generator: str, rungs: Sequence[RungSummary], *, prices: Prices, gold_questions: int
) -> FineTuneSummary:
    """Where accuracy stops improving, why the top rung still fails, and the most a fine-tune saves.

    The plateau is the last rung that beat every rung below it by more than ``PLATEAU_MARGIN``.
    The saving is the top rung's prompt share spent on instructions and examples, which a fine-tuned
    model would not need to be sent; the sources it would still need.
    """
    best_so_far, plateau = -1.0, rungs[0]
    for r in rungs:
        if r.accuracy > best_so_far + PLATEAU_MARGIN:
            plateau = r
        best_so_far = max(best_so_far, r.accuracy)
    best = max(rungs, key=lambda r: r.accuracy)
    top = rungs[-1]
    retrieval = top.failures.get("retrieval", 0)
    generation = top.failures.get("generation", 0)
    abstention = top.failures.get("abstention", 0)
    failures = retrieval + generation + abstention
    share = top.overhead_tokens / top.prompt_tokens if top.prompt_tokens else 0.0
    cost = top.overhead_tokens * prices.prompt_per_million  # per million questions
    if failures and retrieval >= failures / 2:
        verdict = (
            "Fix retrieval first: most remaining failures never had the right document in the prompt, and "
            "no fine-tune can answer from a document it is not shown."
        )
    elif plateau.rung != top.rung:
        verdict = (
            f"Accuracy stops improving at '{plateau.label}'. More prompting buys nothing here; check the "
            "generation failures by hand before deciding."
        )
    elif gold_questions < EXAMPLES_FOR_FINE_TUNE:
        verdict = (
            f"Keep prompting: every rung still helps, and a fine-tune needs hundreds of good examples "
            f"(this gold set has {gold_questions})."
        )
    else:
        verdict = (
            "A fine-tune may pay if the volume is high: the route helps at every rung and you have enough "
            "examples to train on. Export them with `rag-eval export`."
        )
    return FineTuneSummary(
        generator=generator,
        plateau_rung=plateau.rung,
        plateau_accuracy=plateau.accuracy,
        best_rung=best.rung,
        best_accuracy=best.accuracy,
        failures=failures,
        retrieval_misses=retrieval,
        generation_errors=generation,
        abstention_errors=abstention,
        overhead_tokens=top.overhead_tokens,
        prompt_tokens=top.prompt_tokens,
        overhead_share=share,
        overhead_cost_per_million_questions=cost,
        gold_questions=gold_questions,
        verdict=verdict,
    )


def write_reports(report: dict[str, Any], out: Path) -> list[Path]:
    """``report.json``, ``report.md`` and ``ladder.png`` in ``out`` (created); returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "report.json", out / "report.md", out / "ladder.png"]
    paths[0].write_text(json.dumps(report, indent=2, default=_plain) + "\n", encoding="utf-8")
    paths[1].write_text(render_markdown(report), encoding="utf-8")
    plot_ladder(report, paths[2])
    return paths


def _plain(obj: Any) -> Any:
    if hasattr(obj, "__dataclass_fields__"):
        return asdict(obj)
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


def percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _num(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _money(value: float) -> str:
    return f"${value:,.6f}" if value < 0.01 else f"${value:,.2f}"


def render_markdown(report: dict[str, Any]) -> str:
    meta = report["meta"]
    prices = meta["prices"]
    lines = [
        f"# Evaluation of collection `{meta['collection']}`",
        "",
        f"Gold set `{meta['gold']}`: {meta['questions']} questions ({_kinds(meta['kinds'])}). "
        f"Run {meta['started']}, {meta['seconds']:.0f} s. Prices per million tokens: "
        f"${prices['prompt_per_million']:g} prompt, ${prices['completion_per_million']:g} completion.",
        "",
        "## Retrieval (answerable questions, document level)",
        "",
        "| retriever | hit@1 | hit@5 | MRR@10 | nDCG@10 |",
        "| --- | --- | --- | --- | --- |",
    ]
    for mode, row in report["retrieval"].items():
        cells = [percent(row["hit_at_1"]), percent(row["hit_at_5"]), f"{row['mrr_at_10']:.3f}"]
        lines.append(f"| {mode} | {' | '.join(cells)} | {row['ndcg_at_10']:.3f} |")
    for name, ladder in report["ladders"].items():
        lines += ["", f"## Ladder: generator `{name}` (model `{ladder['model']}`)", ""]
        lines += _table(
            [column for column, _ in LADDER_COLUMNS],
            [[render(r[key]) for _, (key, render) in LADDER_COLUMNS] for r in ladder["rungs"]],
        )
        skipped = [rung.label for rung in RUNGS if rung.name not in {r["rung"] for r in ladder["rungs"]}]
        if skipped:
            lines += ["", f"Not run for `{name}`: {', '.join(skipped)} (it can only quote sources)."]
    lines += ["", "## Should we fine-tune?", ""]
    for name, ladder in report["ladders"].items():
        s = ladder["fine_tune"]
        lines += [
            f"### `{name}`",
            "",
            f"- **Accuracy stops improving at:** {_label(s['plateau_rung'])} "
            f"({percent(s['plateau_accuracy'])}); best rung {_label(s['best_rung'])} "
            f"({percent(s['best_accuracy'])}).",
            f"- **Failures at the top rung:** {s['failures']} — {s['retrieval_misses']} retrieval misses "
            f"(the right document never reached the prompt), {s['generation_errors']} generation errors "
            f"(it did, and the answer still missed a fact), {s['abstention_errors']} unanswerable "
            "questions answered anyway.",
            _saving(s)
            if ladder.get("reads_prompt", True)
            else f"- **Most a fine-tune could save:** nothing: `{name}` uses no model, so it reads no "
            "instructions; its token figures are what a model would be sent.",
            f"- **Verdict:** {s['verdict']}",
            "",
        ]
    lines += [
        "**Rule of thumb.** Prompting, then retrieval, comes before fine-tuning. A fine-tune starts to pay "
        "only with hundreds of good examples (a few hundred at least; this gold set has "
        f"{meta['questions']}), "
        "a high volume of requests (so that the instruction and example tokens above cost real money), or a "
        "strict output format that prompts and examples do not hold. It does not fix retrieval misses.",
        "",
    ]
    return "\n".join(lines)


LADDER_COLUMNS: list[tuple[str, tuple[str, Any]]] = [
    ("rung", ("label", str)),
    ("accuracy", ("accuracy", percent)),
    ("answered right", ("answer_accuracy", percent)),
    ("fact recall", ("fact_recall", percent)),
    ("abstained right", ("abstention_accuracy", percent)),
    ("wrongly abstained", ("false_abstention", percent)),
    ("citation precision", ("citation_precision", percent)),
    ("citation recall", ("citation_recall", percent)),
    ("sentences verified", ("verified_share", percent)),
    ("fallback", ("fallback_share", percent)),
    ("prompt tok", ("prompt_tokens", _num)),
    ("completion tok", ("completion_tokens", _num)),
    ("p50 ms", ("latency_p50_ms", _num)),
    ("p95 ms", ("latency_p95_ms", _num)),
    ("cost / question", ("cost_per_question", _money)),
]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _saving(s: dict[str, Any]) -> str:
    return (
        f"- **Most a fine-tune could save:** {_num(s['overhead_tokens'])} of {_num(s['prompt_tokens'])} "
        f"prompt tokens per question ({percent(s['overhead_share'])}) go to instructions and examples; "
        f"at your price that is {_money(s['overhead_cost_per_million_questions'])} per million "
        "questions. The sources stay."
    )


def _label(rung: str) -> str:
    return next((r.label for r in RUNGS if r.name == rung), rung)


def _kinds(kinds: dict[str, int]) -> str:
    return ", ".join(f"{n} {k}" for k, n in kinds.items())


def plot_ladder(report: dict[str, Any], path: Path) -> None:
    """Accuracy (lines) and mean prompt tokens (bars) per rung, one colour per generator."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; must precede pyplot
    import matplotlib.pyplot as plt

    labels = [r.label for r in RUNGS]
    fig, (acc_ax, tok_ax) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    ladders = report["ladders"]
    width = 0.8 / max(1, len(ladders))
    for i, (name, ladder) in enumerate(ladders.items()):
        by_rung = {r["rung"]: r for r in ladder["rungs"]}
        xs = [j for j, rung in enumerate(RUNGS) if rung.name in by_rung]
        acc = [by_rung[RUNGS[j].name]["accuracy"] * 100 for j in xs]
        toks = [by_rung[RUNGS[j].name]["prompt_tokens"] for j in xs]
        acc_ax.plot(xs, acc, marker="o", label=name)
        for x, y in zip(xs, acc, strict=True):
            acc_ax.annotate(
                f"{y:.0f}%", (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8
            )
        tok_ax.bar([x + (i - (len(ladders) - 1) / 2) * width for x in xs], toks, width=width, label=name)
    acc_ax.set_ylabel("accuracy (%)")
    acc_ax.set_ylim(0, 105)
    acc_ax.grid(axis="y", alpha=0.3)
    acc_ax.legend(title="generator")
    acc_ax.set_title(
        f"The ladder on '{report['meta']['collection']}' ({report['meta']['questions']} questions)"
    )
    tok_ax.set_ylabel("prompt tokens per question")
    tok_ax.set_xticks(range(len(labels)), labels, rotation=15)
    tok_ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
