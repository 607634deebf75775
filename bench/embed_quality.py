"""Embedding backends side by side: retrieval quality and throughput of torch fp32 and onnx-int8.

Ingests the folder twice, once per backend, into temporary embedded Chroma stores, then scores dense
retrieval on the gold set's answerable questions (hit@1, hit@5, MRR@10, with the evaluation's own
metric functions and document-level ranking), and times each backend embedding exactly the chunks
that ingest embedded. The issue's bar: onnx-int8 may lose at most one point of hit@5.

    python bench/embed_quality.py
    python bench/embed_quality.py --corpus corpus/ --gold corpus/eval/questions.jsonl --repeats 2
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name shadows the ingest package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402

from ingest.embed import Embedder  # noqa: E402
from ingest.pipeline import Ingestor  # noqa: E402
from ingest.settings import Settings  # noqa: E402
from service.evaluation import metrics as m  # noqa: E402
from service.evaluation.gold import GoldQuestion, load_gold  # noqa: E402
from service.evaluation.run import RETRIEVAL_POOL  # noqa: E402
from service.retrieve import DenseRetriever  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
BACKENDS = ("torch", "onnx-int8")


class RecordingEmbedder(Embedder):
    """The real embedder, keeping the texts ingest asked it to embed, to time them again later."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.seen: list[str] = []

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.seen.extend(texts)
        return super().embed_documents(texts)


@dataclass
class Run:
    backend: str
    load_s: float
    ingest_s: float
    chunks: int
    hit_at_1: float = 0.0
    hit_at_5: float = 0.0
    mrr_at_10: float = 0.0
    ranks: dict[str, float] = field(default_factory=dict)  # question id -> hit@5
    rate: float = 0.0  # chunks/s, best of the repeats


def run_backend(backend: str, corpus: Path, questions: list[GoldQuestion], tmp: Path) -> tuple[Run, Embedder]:
    settings = Settings(
        chroma_path=tmp / backend / "chroma",
        embed_backend=backend,  # type: ignore[arg-type]
        embed_device="cpu",
    )
    embedder = RecordingEmbedder(settings)
    started = time.perf_counter()
    _ = embedder.model  # the first onnx-int8 load exports the model: reported apart from ingest
    load_s = time.perf_counter() - started
    ingestor = Ingestor(settings, embedder=embedder)
    started = time.perf_counter()
    report = ingestor.ingest_paths([corpus])
    run = Run(backend, load_s, time.perf_counter() - started, report.embedded_chunks)
    dense = DenseRetriever(ingestor.store, embedder)
    hits1, hits5, mrrs = [], [], []
    for q in questions:
        scored = [(h.chunk.metadata["source"], h.score) for h in dense.retrieve(q.question, RETRIEVAL_POOL)]
        ranked = m.rank_with_ties(scored, q.sources)
        hits1.append(m.hit_at_k(ranked, q.sources, 1))
        hits5.append(m.hit_at_k(ranked, q.sources, 5))
        mrrs.append(m.mrr_at_k(ranked, q.sources, 10))
        run.ranks[q.id] = hits5[-1]
    run.hit_at_1, run.hit_at_5, run.mrr_at_10 = (m.mean(v) or 0.0 for v in (hits1, hits5, mrrs))
    return run, embedder


def time_embedding(embedders: dict[str, Embedder], texts: list[str], repeats: int) -> dict[str, float]:
    """Chunks/s of each backend on ``texts``, the best of ``repeats`` interleaved passes (the
    machine may be busy with something else during any one of them)."""
    for embedder in embedders.values():
        embedder.embed_documents(texts[:32])  # warm-up: first-call allocations
    best: dict[str, float] = dict.fromkeys(embedders, 0.0)
    for _ in range(repeats):
        for name, embedder in embedders.items():
            started = time.perf_counter()
            embedder.embed_documents(texts)
            best[name] = max(best[name], len(texts) / (time.perf_counter() - started))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=REPO / "corpus")
    parser.add_argument("--gold", type=Path, default=REPO / "corpus" / "eval" / "questions.jsonl")
    parser.add_argument("--repeats", type=int, default=2, help="timed passes per backend (best counts)")
    args = parser.parse_args()

    questions = [q for q in load_gold(args.gold) if q.answerable]
    runs: dict[str, Run] = {}
    embedders: dict[str, Embedder] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for backend in BACKENDS:
            runs[backend], embedders[backend] = run_backend(backend, args.corpus, questions, Path(tmp))
        recorded = embedders["torch"]
        assert isinstance(recorded, RecordingEmbedder)
        texts = list(dict.fromkeys(recorded.seen))
        for name, rate in time_embedding(embedders, texts, args.repeats).items():
            runs[name].rate = rate
        fp32 = np.array(embedders["torch"].embed_documents(texts))
        int8 = np.array(embedders["onnx-int8"].embed_documents(texts))
    cosines = (fp32 * int8).sum(axis=1)

    fp, q8 = runs["torch"], runs["onnx-int8"]
    print(f"corpus            {args.corpus}  ({len(texts)} distinct chunks)")
    print(f"gold              {args.gold}  ({len(questions)} answerable questions, dense retrieval)")
    print(f"{'':18}{'torch fp32':>12}{'onnx-int8':>12}{'int8 vs fp32':>15}")
    for label, key in (("hit@1", "hit_at_1"), ("hit@5", "hit_at_5"), ("MRR@10", "mrr_at_10")):
        a, b = getattr(fp, key), getattr(q8, key)
        print(f"{label:18}{a:12.3f}{b:12.3f}{(b - a) * 100:+13.1f}pt")
    print(f"{'chunks/s':18}{fp.rate:12.1f}{q8.rate:12.1f}{q8.rate / fp.rate:14.2f}x")
    print(f"{'ingest s':18}{fp.ingest_s:12.1f}{q8.ingest_s:12.1f}")
    print(f"{'model load s':18}{fp.load_s:12.1f}{q8.load_s:12.1f}   (int8: with export if uncached)")
    print(f"cosine int8~fp32  mean {cosines.mean():.4f}, min {cosines.min():.4f} over the chunk vectors")
    changed = sorted(q for q in fp.ranks if fp.ranks[q] != q8.ranks[q])
    print(f"hit@5 differs on  {len(changed)} question(s){': ' + ', '.join(changed) if changed else ''}")
    drop = (fp.hit_at_5 - q8.hit_at_5) * 100
    verdict = "OK" if drop <= 1.0 else "OVER"
    print(f"verdict           hit@5 drop {drop:.1f} pt: {verdict} (bar: at most 1 pt)")


if __name__ == "__main__":
    main()
