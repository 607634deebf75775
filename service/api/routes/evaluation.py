from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse

from ingest.settings import validate_collection_name
from service.api.deps import Caller, CallerDep, RuntimeDep
from service.api.schemas import ErrorOut, EvalRequest
from service.errors import BadRequest, NotFound

router = APIRouter(prefix="/v1/eval", tags=["evaluation"])


@router.post("", responses={400: {"model": ErrorOut}, 404: {"model": ErrorOut}})
def evaluate(body: EvalRequest, caller: CallerDep, runtime: RuntimeDep) -> dict[str, Any]:
    """Run gold questions through retrieval and up the ladder (bare question, + system prompt,
    + few-shot examples, + retrieved sources, + citation verification), as `rag-eval` does.

    Returns the JSON report and keeps it, with report.md and ladder.png, as the collection's latest
    (`GET /v1/eval/latest`). It runs while the request waits: a local model takes seconds a question.
    """
    from service.evaluation.gold import GoldSetError, check_unique, parse_question
    from service.evaluation.report import write_reports
    from service.evaluation.run import Prices
    from service.evaluation.run import evaluate as run_evaluation

    collection = caller.check(body.collection)
    limit = runtime.settings.max_eval_questions
    if len(body.questions) > limit:
        raise BadRequest(f"{len(body.questions)} questions, over RAG_MAX_EVAL_QUESTIONS ({limit})")
    try:
        questions = check_unique(
            [parse_question(q, where=f"questions[{i}]") for i, q in enumerate(body.questions)], "questions"
        )
        report = run_evaluation(
            questions,
            runtime=runtime,
            collection=collection,
            generators=body.generators or [runtime.settings.generator],
            prices=Prices(body.price_prompt_per_million, body.price_completion_per_million),
            gold_name="POST /v1/eval",
            top_k=body.top_k,
        )
    except (GoldSetError, ValueError) as exc:
        raise BadRequest(str(exc)) from exc
    write_reports(report, runtime.settings.eval_dir / collection)
    return report


@router.get("/latest", responses={404: {"model": ErrorOut}})
def latest(runtime: RuntimeDep, caller: CallerDep, collection: str = "default") -> dict[str, Any]:
    """The collection's latest evaluation report, as POST /v1/eval returned it."""
    path = _report_file(runtime.settings.eval_dir, caller, collection, "report.json")
    report: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return report


@router.get("/latest/ladder.png", response_class=FileResponse, responses={404: {"model": ErrorOut}})
def latest_chart(runtime: RuntimeDep, caller: CallerDep, collection: str = "default") -> FileResponse:
    """The ladder chart of the collection's latest evaluation."""
    path = _report_file(runtime.settings.eval_dir, caller, collection, "ladder.png")
    return FileResponse(path, media_type="image/png")


def _report_file(eval_dir: Path, caller: Caller, collection: str, name: str) -> Path:
    """A file of the collection's latest report.

    :raises NotFound: no report yet, or a collection the key may not see: the same answer, since a
        report is kept for any name, even of a collection deleted since.
    """
    path = eval_dir / validate_collection_name(collection) / name
    if not caller.may_see(collection) or not path.is_file():
        raise NotFound(f"no evaluation of collection {collection!r} yet: POST /v1/eval first")
    return path
