"""Ingest benchmark: the whole pipeline on a folder, against raw ``model.encode`` on the same chunks.

Prints files/s, chunks/s, total seconds and peak memory of a full ingest into a fresh store, then
times the embedding model alone on exactly the chunks that ingest produced. The ratio of the two is
the pipeline's overhead (loading, parsing, splitting, hashing, storing) over embedding.

    python bench/ingest.py corpus/
    python bench/ingest.py /tmp/pgdoc/x/usr/share/doc/postgresql-doc-15/html --batch-size 64
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name shadows the ingest package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from ingest.embed import Embedder  # noqa: E402
from ingest.pipeline import Ingestor  # noqa: E402
from ingest.settings import Settings  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(chroma_path=Path(tmp) / "chroma", embed_batch_size=args.batch_size)
        embedder = Embedder(settings)
        _ = embedder.model  # load time is reported apart: it is paid once per process
        ingestor = Ingestor(settings, embedder=embedder)

        started = time.perf_counter()
        report = ingestor.ingest_paths([args.folder])
        ingest_s = time.perf_counter() - started
        ingest_peak = peak_rss_mb()

        chunks = ingestor.store.all_chunks()
        texts = _embed_texts(ingestor, chunks)
        started = time.perf_counter()
        embedder.model.encode(texts, batch_size=args.batch_size, normalize_embeddings=True)
        encode_s = time.perf_counter() - started

    files = report.count("added")
    print(f"folder            {args.folder}")
    print(f"files indexed     {files} (skipped {report.count('skipped')}, "
          f"failed {report.count('failed')})")  # fmt: skip
    print(f"chunks            {len(texts)}")
    print(f"ingest total      {ingest_s:.1f} s")
    print(f"ingest rate       {files / ingest_s:.1f} files/s, {len(texts) / ingest_s:.1f} chunks/s")
    print(f"raw model.encode  {encode_s:.1f} s, {len(texts) / encode_s:.1f} chunks/s")
    print(f"overhead ratio    {ingest_s / encode_s:.2f}x  (ingest / raw encode of the same chunks)")
    print(f"peak memory       {ingest_peak:.0f} MB (process RSS)")


def _embed_texts(ingestor: Ingestor, chunks: list[object]) -> list[str]:
    """The exact texts ingest embedded, rebuilt from the stored chunks in the same way."""
    from ingest.split import embed_prefix

    texts = []
    for chunk in chunks:
        meta = chunk.metadata  # type: ignore[attr-defined]
        path = tuple(p for p in str(meta.get("section", "")).split(" > ") if p)
        texts.append(f"{embed_prefix(str(meta['title']), path)}\n\n{chunk.text}")  # type: ignore[attr-defined]
    return texts


if __name__ == "__main__":
    main()
