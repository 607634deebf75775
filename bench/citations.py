"""How often verification changes what a generator wrote, over a question set.

For each question: did the generator's text pass verification whole, lose some sentences, or lose all
of them (so the extractive fallback answered); did it abstain; and was the answer's source the one the
question set names. Runs in process over a fresh index of the folder, with the chosen generator.

    python bench/citations.py                       # corpus/, local SmolLM2, tests/data questions
    python bench/citations.py --generator openai    # with RAG_LLM_BASE_URL set
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and bench/ingest.py would shadow ingest.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from ingest.embed import Embedder  # noqa: E402
from ingest.pipeline import Ingestor  # noqa: E402
from ingest.settings import Settings  # noqa: E402
from service.answer import AnswerContext, answer_question  # noqa: E402
from service.generate import make_generator  # noqa: E402
from service.prompt import NOT_COVERED, PromptSet  # noqa: E402
from service.retrieve import HybridRetriever  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder", type=Path, default=REPO / "corpus")
    questions_file = REPO / "tests" / "data" / "retrieval_questions.jsonl"
    parser.add_argument("--questions", type=Path, default=questions_file)
    parser.add_argument("--generator", default="local")
    args = parser.parse_args()
    questions = [json.loads(line) for line in args.questions.read_text().splitlines() if line.strip()]

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(chroma_path=Path(tmp) / "chroma")
        embedder = Embedder(settings)
        ingestor = Ingestor(settings, embedder=embedder)
        ingestor.ingest_paths([args.folder])
        ctx = AnswerContext(settings, embedder, PromptSet.load(settings.prompt_dir))
        retriever = HybridRetriever(ingestor.store, embedder)
        generator = make_generator(args.generator, settings, embedder=embedder)

        outcomes: Counter[str] = Counter()
        removed_sentences = 0
        right_source = answerable = 0
        seconds: list[float] = []
        for q in questions:
            started = time.perf_counter()
            answer = answer_question(
                q["question"], ctx=ctx, retriever=retriever, generator=generator, collection="default"
            )
            seconds.append(time.perf_counter() - started)
            removed_sentences += len(answer.removed)
            if not answer.covered or answer.answer == NOT_COVERED:
                outcome = "not covered (floor)" if answer.generator == "none" else "abstained"
            elif answer.fallback:
                outcome = "all model sentences failed: extractive fallback"
            elif answer.removed:
                outcome = "some sentences removed, rest verified"
            else:
                outcome = "model text verified whole"
            outcomes[outcome] += 1
            if q.get("answerable", True):
                answerable += 1
                right_source += any(c.source == q["source"] for c in answer.citations)

    total = len(questions)
    print(f"generator {args.generator}, {total} questions ({answerable} answerable), strict mode")
    for outcome, n in outcomes.most_common():
        print(f"  {outcome:<48} {n:>3}  ({n / total:.0%})")
    per_answer = removed_sentences / total
    print(f"  sentences removed as unsupported: {removed_sentences} ({per_answer:.1f} per answer)")
    print(f"  answerable questions citing the expected document: {right_source}/{answerable}")
    seconds.sort()
    print(f"  latency p50 {seconds[len(seconds) // 2]:.1f} s, max {seconds[-1]:.1f} s")


if __name__ == "__main__":
    main()
