"""The ``ingest`` command: index files and folders, list what is indexed, delete a document.

Examples::

    ingest corpus/                       # index a folder (recursively) into the default collection
    ingest docs/ notes.md -c handbook    # files and folders into the collection "handbook"
    ingest docs/ --prune                 # also drop documents whose files are gone from docs/
    ingest list -c handbook              # what is indexed
    ingest delete hr/old-policy.md       # remove one document by its source
    ingest collections                   # the collections in the store
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ingest.errors import IngestError
from ingest.settings import get_settings
from ingest.types import IngestReport

app = typer.Typer(
    help="Index documents into ragfirst's Chroma store. `ingest PATH...` is `ingest add PATH...`.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
console = Console()
errors = Console(stderr=True)

CollectionOpt = Annotated[
    str | None,
    typer.Option("--collection", "-c", help="Collection name (default: RAG_COLLECTION or 'default')."),
]
SUBCOMMANDS = {"add", "list", "delete", "collections", "--help", "-h"}


def _fail(exc: Exception, code: int = 2) -> typer.Exit:
    errors.print(f"[red]error:[/red] {exc}", highlight=False)
    return typer.Exit(code)


@app.command()
def add(
    paths: Annotated[list[Path], typer.Argument(help="Files and folders to index.")],
    collection: CollectionOpt = None,
    prune: Annotated[
        bool, typer.Option("--prune", help="Drop documents whose files are gone from the folders.")
    ] = False,
) -> None:
    """Index files and folders; unchanged files are skipped by content hash.

    Exits 1 when any file failed, after indexing all the others.
    """
    from ingest.pipeline import Ingestor

    settings = get_settings()
    try:
        ingestor = Ingestor(settings, collection=collection)
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[current]}", style="dim"),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task("indexing", total=None, current="")

            def on_progress(done: int, total: int, source: str) -> None:
                progress.update(task, completed=done, total=total, current=source)

            report = ingestor.ingest_paths(paths, prune=prune, on_progress=on_progress)
    except IngestError as exc:
        raise _fail(exc) from exc
    _print_report(report)
    if not report.ok:
        raise typer.Exit(1)


def _print_report(report: IngestReport) -> None:
    if report.repaired:
        console.print(f"repaired {report.repaired} document(s) left half-written by an earlier run")
    problems = [f for f in report.files if f.outcome in ("skipped", "failed", "pruned")]
    if problems:
        table = Table(title="Not indexed", title_justify="left", show_edge=False)
        table.add_column("file")
        table.add_column("outcome")
        table.add_column("reason")
        for f in problems:
            style = "red" if f.outcome == "failed" else "yellow"
            table.add_row(f.source, f"[{style}]{f.outcome}[/{style}]", f.reason)
        console.print(table)
    counts = ", ".join(
        f"{report.count(k)} {k}" for k in ("added", "updated", "unchanged", "skipped", "failed", "pruned")
    )
    chunks = f"{report.embedded_chunks} chunks embedded, {report.reused_chunks} reused"
    console.print(f"collection [bold]{report.collection}[/bold]: {counts}; {chunks}", highlight=False)


@app.command("list")
def list_documents(collection: CollectionOpt = None) -> None:
    """List the documents indexed in a collection."""
    from ingest.store import open_store

    try:
        docs = open_store(get_settings(), collection, create=False).documents()
    except IngestError as exc:
        raise _fail(exc) from exc
    table = Table(show_edge=False)
    for column in ("source", "title", "type", "chunks", "indexed at", "id"):
        table.add_column(column)
    for doc in docs:
        table.add_row(doc.source, doc.title, doc.filetype, str(doc.chunks), doc.indexed_at,
                      doc.document_id)  # fmt: skip
    console.print(table)
    console.print(f"{len(docs)} documents")


@app.command()
def delete(
    source: Annotated[str, typer.Argument(help="The document's source, as `ingest list` shows it.")],
    collection: CollectionOpt = None,
) -> None:
    """Delete one document (all its chunks) by its source path."""
    from ingest.store import open_store

    try:
        store = open_store(get_settings(), collection, create=False)
        doc = store.delete_document(store.find_source(source).document_id)
    except IngestError as exc:
        raise _fail(exc, 1) from exc
    console.print(f"deleted {doc.source} ({doc.chunks} chunks)")


@app.command()
def collections() -> None:
    """List the collections in the store."""
    from ingest.store import list_collections

    try:
        names = list_collections(get_settings())
    except IngestError as exc:
        raise _fail(exc) from exc
    for name in names:
        console.print(name)


def run_with_default(cli: typer.Typer, default: str, subcommands: set[str]) -> None:
    """Run ``cli``, treating a first argument that names no subcommand as ``default``'s argument
    (``ingest docs/`` is ``ingest add docs/``)."""
    args = sys.argv[1:]
    if args and args[0] not in subcommands:
        sys.argv.insert(1, default)
    cli()


def main() -> None:
    """Entry point: a first argument that names no subcommand means ``add``."""
    run_with_default(app, "add", SUBCOMMANDS)


if __name__ == "__main__":
    main()
