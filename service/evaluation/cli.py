"""The ``rag-eval`` command: measure the route on your own documents, and export training data.

Examples::

    rag-eval corpus/eval/questions.jsonl --out eval-out                 # generator from RAG_GENERATOR
    rag-eval gold.jsonl -c handbook --out out -g local -g extractive    # two ladders side by side
    rag-eval gold.jsonl --out out --price-prompt 0.15 --price-completion 0.60
    rag-eval export gold.jsonl -c handbook --out train.jsonl            # fine-tuning examples
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from ingest.cli import run_with_default
from ingest.errors import IngestError
from ingest.settings import get_settings
from service.errors import RagError

app = typer.Typer(
    help="Evaluate ragfirst on a gold set: retrieval metrics and the prompting-to-RAG ladder. "
    "`rag-eval GOLD ...` is `rag-eval run GOLD ...`.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
console = Console()
errors = Console(stderr=True)
SUBCOMMANDS = {"run", "export", "--help", "-h"}

GoldArg = Annotated[
    Path, typer.Argument(help="Gold set, one JSON question per line.", exists=True, dir_okay=False)
]
CollectionOpt = Annotated[
    str | None, typer.Option("--collection", "-c", help="Collection (default: RAG_COLLECTION or 'default').")
]
LimitOpt = Annotated[int | None, typer.Option("--limit", help="Only the first N questions (a quick look).")]


def _fail(exc: Exception) -> typer.Exit:
    errors.print(f"[red]error:[/red] {exc}", highlight=False)
    return typer.Exit(2)


@app.command()
def run(
    gold: GoldArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for report.md, report.json, ladder.png.")],
    collection: CollectionOpt = None,
    generator: Annotated[
        list[str] | None,
        typer.Option("--generator", "-g", help="local, openai or extractive; repeat for several ladders."),
    ] = None,
    price_prompt: Annotated[float, typer.Option(help="Price per million prompt tokens.")] = 0.0,
    price_completion: Annotated[float, typer.Option(help="Price per million completion tokens.")] = 0.0,
    top_k: Annotated[int | None, typer.Option(help="Sources per question (default RAG_TOP_K).")] = None,
    limit: LimitOpt = None,
) -> None:
    """Run the gold set through retrieval (dense, keyword, hybrid) and up the ladder: bare question,
    + system prompt, + few-shot examples, + retrieved sources, + citation verification."""
    from service.evaluation.gold import GoldSetError, load_gold
    from service.evaluation.report import write_reports
    from service.evaluation.run import Prices, evaluate
    from service.runtime import Runtime

    settings = get_settings()
    name = collection or settings.collection
    try:
        questions = load_gold(gold)[:limit]
        runtime = Runtime(settings)
        with _progress() as progress:
            task = progress.add_task("evaluating", total=None)
            report = evaluate(
                questions,
                runtime=runtime,
                collection=name,
                generators=generator or [settings.generator],
                prices=Prices(price_prompt, price_completion),
                gold_name=str(gold),
                top_k=top_k,
                on_progress=lambda what: progress.update(task, description=what),
            )
        paths = write_reports(report, out)
    except (GoldSetError, RagError, IngestError, ValueError) as exc:
        raise _fail(exc) from exc
    _print_summary(report)
    console.print("wrote " + ", ".join(str(p) for p in paths), highlight=False)


@app.command()
def export(
    gold: GoldArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="JSONL file to write.")],
    collection: CollectionOpt = None,
    generator: Annotated[
        str | None, typer.Option("--generator", "-g", help="Who answers (RAG_GENERATOR).")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="chat (messages) or prompt-completion.")] = "chat",
    limit: LimitOpt = None,
) -> None:
    """Write the gold questions with their verified, correct answers as fine-tuning JSONL."""
    from service.evaluation.export import export_examples
    from service.evaluation.gold import GoldSetError, load_gold
    from service.runtime import Runtime

    if fmt not in ("chat", "prompt-completion"):
        raise _fail(ValueError(f"--format must be chat or prompt-completion, not {fmt!r}"))
    settings = get_settings()
    try:
        questions = load_gold(gold)[:limit]
        with _progress() as progress:
            task = progress.add_task("exporting", total=None)
            report = export_examples(
                questions,
                runtime=Runtime(settings),
                collection=collection or settings.collection,
                generator=generator,
                out=out,
                fmt=fmt,  # type: ignore[arg-type]
                on_progress=lambda what: progress.update(task, description=what),
            )
    except (GoldSetError, RagError, IngestError, ValueError) as exc:
        raise _fail(exc) from exc
    console.print(f"wrote {report.written} examples to {out}; skipped {len(report.skipped)}", highlight=False)
    for line in report.skipped:
        console.print(f"  skipped {line}", style="dim", highlight=False)


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def _print_summary(report: dict[str, object]) -> None:
    from service.evaluation.report import percent

    retrieval = Table(title="retrieval", title_justify="left", show_edge=False)
    for column in ("retriever", "hit@1", "hit@5", "MRR@10", "nDCG@10"):
        retrieval.add_column(column)
    for mode, row in report["retrieval"].items():  # type: ignore[attr-defined]
        retrieval.add_row(
            mode,
            percent(row["hit_at_1"]),
            percent(row["hit_at_5"]),
            f"{row['mrr_at_10']:.3f}",
            f"{row['ndcg_at_10']:.3f}",
        )
    console.print(retrieval)
    for name, ladder in report["ladders"].items():  # type: ignore[attr-defined]
        table = Table(title=f"ladder: {name}", title_justify="left", show_edge=False)
        for column in ("rung", "accuracy", "abstained right", "citation precision", "prompt tok", "p50 ms"):
            table.add_column(column)
        for r in ladder["rungs"]:
            table.add_row(
                r["label"],
                percent(r["accuracy"]),
                percent(r["abstention_accuracy"]),
                percent(r["citation_precision"]),
                f"{r['prompt_tokens']:.0f}",
                f"{r['latency_p50_ms']:.0f}",
            )
        console.print(table)
        console.print(f"verdict: {ladder['fine_tune']['verdict']}", highlight=False)


def main() -> None:
    """Entry point: a first argument that names no subcommand means ``run``."""
    run_with_default(app, "run", SUBCOMMANDS)


if __name__ == "__main__":
    main()
