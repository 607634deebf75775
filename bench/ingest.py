"""Ingest benchmark: ragfirst's pipeline against the tutorial pipeline and against raw embedding.

Three sides, in one run, on the same folder, each into its own fresh embedded Chroma store:

- **tutorial**: what a user would write from a LangChain tutorial: BeautifulSoup ``get_text()``,
  ``RecursiveCharacterTextSplitter(1000, 200)``, torch fp32 ``model.encode`` (batch 32), and
  ``collection.add`` in Chroma's largest batches.
- **ragfirst**: ``Ingestor.ingest_paths`` with the settings as configured (RAG_* variables: the
  default embedding backend is ONNX int8), files to queryable index.
- **raw encode**: the same embedder alone on exactly the texts ragfirst embedded, so that
  ragfirst / raw is the pipeline's own overhead (reading, parsing, splitting, hashing, storing).

Model load time is paid once per process and reported apart. Prints the two ratios with both sides.

    python bench/ingest.py /tmp/pgdoc/x/usr/share/doc/postgresql-doc-15/html
    python bench/ingest.py corpus/ --skip-tutorial
    python bench/ingest.py DIR --limit 200 --out /tmp/ingest.json
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Run as a script, this file's folder comes first on sys.path and its name shadows the ingest package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from ingest.embed import Embedder  # noqa: E402
from ingest.pipeline import Ingestor, discover  # noqa: E402
from ingest.settings import Settings  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def tutorial_ingest(files: list[Path], chroma_path: Path, model_path: str) -> dict[str, Any]:
    """The pipeline of a typical RAG tutorial, written the way one would: whole, and in order."""
    import chromadb
    from bs4 import BeautifulSoup
    from langchain_text_splitters import RecursiveCharacterTextSplitter
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_path, device="cpu")
    started = time.perf_counter()
    splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)
    texts: list[str] = []
    metadatas: list[dict[str, Any]] = []
    for path in files:
        raw = path.read_bytes()
        is_html = path.suffix in (".html", ".htm")
        text = BeautifulSoup(raw, "html.parser").get_text() if is_html else raw.decode()
        for chunk in splitter.split_text(text):
            texts.append(chunk)
            metadatas.append({"source": str(path)})
    parsed_s = time.perf_counter() - started
    vectors = model.encode(texts, batch_size=32, normalize_embeddings=True, show_progress_bar=False)
    encoded_s = time.perf_counter() - started
    client = chromadb.PersistentClient(path=str(chroma_path))
    collection = client.create_collection("tutorial", embedding_function=None)
    step = client.get_max_batch_size()
    for at in range(0, len(texts), step):
        collection.add(
            ids=[str(i) for i in range(at, min(at + step, len(texts)))],
            embeddings=vectors[at : at + step],
            documents=texts[at : at + step],
            metadatas=metadatas[at : at + step],
        )
    total_s = time.perf_counter() - started
    return {
        "seconds": total_s, "chunks": len(texts), "parse_split_s": parsed_s,
        "encode_s": encoded_s - parsed_s, "store_s": total_s - encoded_s,
    }  # fmt: skip


def ragfirst_ingest(paths: list[Path], settings: Settings) -> tuple[dict[str, Any], Embedder, list[str]]:
    embedder = Embedder(settings)
    load_started = time.perf_counter()
    _ = embedder.model
    load_s = time.perf_counter() - load_started
    ingestor = Ingestor(settings, embedder=embedder)
    started = time.perf_counter()
    report = ingestor.ingest_paths(paths)
    seconds = time.perf_counter() - started
    texts = embedded_texts(ingestor)
    return (
        {
            "seconds": seconds, "chunks": len(texts), "files": report.count("added"),
            "skipped": report.count("skipped"), "failed": report.count("failed"), "model_load_s": load_s,
            "backend": getattr(settings, "embed_backend", "torch"), "batch_size": settings.embed_batch_size,
        },
        embedder,
        texts,
    )


def embedded_texts(ingestor: Ingestor) -> list[str]:
    """The exact texts ingest embedded, rebuilt from the stored chunks the way the splitter builds them."""
    from ingest.split import embed_prefix

    texts = []
    for chunk in ingestor.store.all_chunks():
        meta = chunk.metadata
        path = tuple(p for p in str(meta.get("section", "")).split(" > ") if p)
        texts.append(f"{embed_prefix(str(meta['title']), path)}\n\n{chunk.text}")
    return texts


def raw_encode(embedder: Embedder, texts: list[str]) -> float:
    started = time.perf_counter()
    embedder.embed_documents(texts)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--limit", type=int, default=0, help="only the first N files (sorted)")
    parser.add_argument("--skip-tutorial", action="store_true")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()

    found = discover([args.folder]).files
    files = [f.path for f in found][: args.limit or None]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        subset = work / "input"
        if args.limit:
            for f in found[: args.limit]:
                (subset / f.source).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f.path, subset / f.source)  # a symlink out of the folder is skipped
        source = subset if args.limit else args.folder
        megabytes = sum(p.stat().st_size for p in files) / 2**20

        settings = Settings(chroma_path=work / "ragfirst")
        ours, embedder, texts = ragfirst_ingest([source], settings)
        ours["peak_rss_mb"] = peak_rss_mb()
        raw_s = raw_encode(embedder, texts)

        tutorial: dict[str, Any] | None = None
        if not args.skip_tutorial:
            tutorial = tutorial_ingest(files, work / "tutorial", embedder.path)

    print(f"folder              {args.folder}  ({len(files)} files, {megabytes:.1f} MB)")
    print(f"ragfirst            {ours['seconds']:.1f} s, {ours['chunks']} chunks, "
          f"{ours['files']} files indexed (skipped {ours['skipped']}, failed {ours['failed']}), "
          f"backend {ours['backend']}, batch {ours['batch_size']}, model load {ours['model_load_s']:.1f} s "
          "apart")  # fmt: skip
    print(f"  raw encode        {raw_s:.1f} s for the same {len(texts)} texts, "
          f"{len(texts) / raw_s:.1f} chunks/s")  # fmt: skip
    print(f"  overhead          {ours['seconds'] / raw_s:.3f}x  (ragfirst {ours['seconds']:.1f} s / "
          f"raw encode {raw_s:.1f} s; target <= 1.15x)")  # fmt: skip
    result: dict[str, Any] = {
        "files": len(files), "megabytes": megabytes, "ragfirst": ours, "raw_encode_s": raw_s,
    }  # fmt: skip
    if tutorial:
        print(f"tutorial            {tutorial['seconds']:.1f} s, {tutorial['chunks']} chunks "
              f"(parse+split {tutorial['parse_split_s']:.1f} s, encode {tutorial['encode_s']:.1f} s, "
              f"store {tutorial['store_s']:.1f} s)")  # fmt: skip
        print(f"  speed-up          {tutorial['seconds'] / ours['seconds']:.2f}x  (tutorial "
              f"{tutorial['seconds']:.1f} s / ragfirst {ours['seconds']:.1f} s, same files; "
              "target >= 3x)")  # fmt: skip
        result["tutorial"] = tutorial
    print(f"peak memory         {ours['peak_rss_mb']:.0f} MB (process RSS after ragfirst's side)")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
