"""The evaluation: the gold set format, judging answers, the ladder through the real pipeline, the
report files, the fine-tuning export, the CLI and POST /v1/eval."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from typer.testing import CliRunner

from ingest.embed import Embedder
from ingest.settings import Settings
from service.api.app import create_app
from service.evaluation import metrics as m
from service.evaluation.cli import app as cli
from service.evaluation.export import export_examples
from service.evaluation.gold import GoldQuestion, GoldSetError, load_gold, parse_question
from service.evaluation.report import PLATEAU_MARGIN, fine_tune_summary, write_reports
from service.evaluation.run import RUNGS, Prices, RungSummary, evaluate, judge
from service.prompt import NOT_COVERED
from service.runtime import Runtime
from tests.conftest import CORPUS

GOLD = CORPUS / "eval" / "questions.jsonl"
OFFICE = "How many days per week must employees be in the office?"
SMALL = [
    {"id": "vac", "kind": "direct", "question": "How many PTO days can be carried over into the next year?",
     "sources": ["hr/pto-policy.md"], "facts": ["5"]},
    {"id": "office", "kind": "superseded", "question": OFFICE, "sources": ["hr/remote-work-policy-2025.md"],
     "facts": [["3 days", "three days"]], "avoid": ["2 days per week"]},
    {"id": "none", "kind": "unanswerable", "question": "Which country won the football World Cup in 1998?",
     "answerable": False},
]  # fmt: skip


def small_gold() -> list[GoldQuestion]:
    return [parse_question(q) for q in SMALL]


# -- the gold set ----------------------------------------------------------------------------------


def test_the_sample_gold_set_is_complete() -> None:
    questions = load_gold(GOLD)
    kinds = {k: sum(q.kind == k for q in questions) for k in ("direct", "paraphrase", "multi", "superseded")}
    unanswerable = [q for q in questions if not q.answerable]
    assert len(questions) >= 60 and len(unanswerable) >= 10
    assert all(n >= 5 for n in kinds.values()), kinds
    for q in questions:
        for source in q.sources:
            assert (CORPUS / source).is_file(), (q.id, source)
        assert q.answerable == bool(q.facts), q.id
    assert all(len(q.sources) >= 2 for q in questions if q.kind == "multi")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "not JSON"),
        ('{"answerable": true, "sources": ["a.md"]}', "'question'"),
        ('{"question": "q?", "sources": []}', "needs 'sources'"),
        ('{"question": "q?", "answerable": false, "facts": ["x"]}', "no sources and no facts"),
        ('{"question": "q?", "sources": ["a.md"], "facts": [""]}', "each fact"),
        ('{"question": "q?", "sources": ["a.md"], "kind": "tricky"}', "kind 'tricky'"),
        ('{"question": "q?", "sources": "a.md"}', "'sources' must be a list"),
    ],
)
def test_bad_gold_lines_name_the_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "gold.jsonl"
    path.write_text('{"question": "fine?", "sources": ["a.md"], "facts": ["x"]}\n\n' + line + "\n")
    with pytest.raises(GoldSetError, match=message) as info:
        load_gold(path)
    assert f"{path}:3" in str(info.value)


def test_repeated_ids_and_empty_sets_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "gold.jsonl"
    path.write_text('{"id": "a", "question": "x?", "answerable": false}\n' * 2)
    with pytest.raises(GoldSetError, match="used twice"):
        load_gold(path)
    path.write_text("// only a comment\n")
    with pytest.raises(GoldSetError, match="no questions"):
        load_gold(path)


def test_judge_needs_every_fact_and_nothing_superseded() -> None:
    office = small_gold()[1]
    assert judge(office, "Employees work three days per week in the office [1].") == (True, 1.0, False)
    assert judge(office, "It moved from 2 days per week to 3 days [1].")[0] is False  # the old figure
    assert judge(office, "Office attendance is flexible [1].") == (False, 0.0, False)
    assert judge(office, NOT_COVERED) == (False, 0.0, True)
    none = small_gold()[2]
    assert judge(none, NOT_COVERED) == (True, None, True)
    assert judge(none, "France won [1].") == (False, None, False)


# -- the summary -----------------------------------------------------------------------------------


def _rung(name: str, accuracy: float, *, failures: dict[str, int] | None = None) -> RungSummary:
    label = next(r.label for r in RUNGS if r.name == name)
    return RungSummary(name, label, 10, accuracy, accuracy, accuracy, None, None, None, None, None, None,
                       1000.0, 50.0, 400.0, 10.0, 20.0, 0.0, failures or {})  # fmt: skip


def test_plateau_is_the_last_rung_that_beat_all_below_it() -> None:
    rungs = [
        _rung("bare", 0.1),
        _rung("system", 0.2),
        _rung("few_shot", 0.2 + PLATEAU_MARGIN / 2),
        _rung("retrieval", 0.7),
        _rung("verified", 0.71, failures={"generation": 2, "retrieval": 1}),
    ]
    summary = fine_tune_summary("x", rungs, prices=Prices(1.0, 2.0), gold_questions=10)
    assert summary.plateau_rung == "retrieval" and summary.best_rung == "verified"
    assert (summary.failures, summary.retrieval_misses, summary.generation_errors) == (3, 1, 2)
    assert summary.overhead_share == pytest.approx(0.4)
    assert summary.overhead_cost_per_million_questions == pytest.approx(400.0)
    assert "stops improving" in summary.verdict


def test_retrieval_misses_turn_the_verdict_to_retrieval() -> None:
    rungs = [_rung("retrieval", 0.5), _rung("verified", 0.6, failures={"retrieval": 3, "generation": 1})]
    summary = fine_tune_summary("x", rungs, prices=Prices(), gold_questions=10)
    assert summary.verdict.startswith("Fix retrieval first")


# -- end to end ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runtime(corpus_settings: Settings, embedder: Embedder) -> Runtime:
    # Short answers: the ladder makes four generations a question, and the test checks the wiring.
    return Runtime(corpus_settings.model_copy(update={"max_answer_tokens": 48}), embedder=embedder)


@pytest.fixture(scope="module")
def report(runtime: Runtime) -> dict[str, Any]:
    return evaluate(small_gold(), runtime=runtime, collection="default", generators=["extractive", "local"],
                    prices=Prices(0.15, 0.60), gold_name="small")  # fmt: skip


def test_retrieval_table_is_the_mean_of_its_questions(report: dict[str, Any]) -> None:
    rows = report["retrieval_questions"]
    assert {r["question_id"] for r in rows} == {"vac", "office"}  # unanswerable questions have no ranking
    for mode in ("dense", "keyword", "hybrid"):
        mine = [r for r in rows if r["mode"] == mode]
        for key in ("hit_at_1", "hit_at_5", "mrr_at_10", "ndcg_at_10"):
            assert report["retrieval"][mode][key] == pytest.approx(sum(r[key] for r in mine) / len(mine))
        for r in mine:
            gold = {"vac": ["hr/pto-policy.md"], "office": ["hr/remote-work-policy-2025.md"]}[
                r["question_id"]
            ]
            assert r["mrr_at_10"] == pytest.approx(m.mrr_at_k(r["ranked"], gold, 10))
    assert report["retrieval"]["hybrid"]["hit_at_5"] == 1.0


def test_ladders_run_every_rung_the_generator_can(report: dict[str, Any]) -> None:
    local = report["ladders"]["local"]
    extractive = report["ladders"]["extractive"]
    assert [r["rung"] for r in local["rungs"]] == [r.name for r in RUNGS]
    assert [r["rung"] for r in extractive["rungs"]] == ["retrieval", "verified"]
    assert len(local["questions"]) == 3 * 5 and len(extractive["questions"]) == 3 * 2
    by_rung = {r["rung"]: r for r in local["rungs"]}
    # Instructions and examples cost tokens: each rung's prompt is bigger than the one before.
    assert (
        by_rung["bare"]["prompt_tokens"]
        < by_rung["system"]["prompt_tokens"]
        < by_rung["few_shot"]["prompt_tokens"]
    )
    assert by_rung["bare"]["overhead_tokens"] == 0 < by_rung["few_shot"]["overhead_tokens"]
    # The off-topic question is below the relevance floor: not covered, without a model call.
    rows = {(q["question_id"], q["rung"]): q for q in local["questions"]}
    assert rows[("none", "verified")]["answer"] == NOT_COVERED and rows[("none", "verified")]["correct"]
    assert rows[("none", "verified")]["prompt_tokens"] == 0
    verified = extractive["rungs"][1]
    assert verified["citation_precision"] == 1.0 and verified["answer_accuracy"] == 1.0
    for summary in (local, extractive):
        top = summary["rungs"][-1]
        counted = sum(q["correct"] for q in summary["questions"] if q["rung"] == "verified")
        assert top["accuracy"] == pytest.approx(counted / 3)
        assert summary["fine_tune"]["failures"] == 3 - counted
    assert local["rungs"][0]["cost_per_question"] == pytest.approx(
        m.price(round(local["rungs"][0]["prompt_tokens"]), round(local["rungs"][0]["completion_tokens"]),
                prompt_per_million=0.15, completion_per_million=0.60)
    )  # fmt: skip


def test_report_files_hold_the_run(report: dict[str, Any], tmp_path: Path) -> None:
    paths = write_reports(report, tmp_path / "out")
    assert [p.name for p in paths] == ["report.json", "report.md", "ladder.png"]
    assert json.loads(paths[0].read_text()) == json.loads(json.dumps(report))
    md = paths[1].read_text()
    hybrid = report["retrieval"]["hybrid"]
    assert f"| hybrid | {hybrid['hit_at_1'] * 100:.1f}% | {hybrid['hit_at_5'] * 100:.1f}% |" in md
    top = report["ladders"]["local"]["rungs"][-1]
    assert f"| + citation verification | {top['accuracy'] * 100:.1f}% |" in md
    assert "## Should we fine-tune?" in md and "hundreds of good examples" in md
    assert report["ladders"]["local"]["fine_tune"]["verdict"] in md
    assert "`extractive` uses no model" in md and "`local` uses no model" not in md
    png = paths[2].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_export_writes_right_answers_as_chat_examples(runtime: Runtime, tmp_path: Path) -> None:
    out = tmp_path / "train.jsonl"
    done = export_examples(
        small_gold(), runtime=runtime, collection="default", generator="extractive", out=out
    )
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert done.written == len(lines) >= 2 and done.written + len(done.skipped) == 3
    for line in lines:
        roles = [msg["role"] for msg in line["messages"]]
        assert roles[0] == "system" and roles[-1] == "assistant" and roles[-2] == "user"
    assert lines[-1]["messages"][-1]["content"] == NOT_COVERED  # the unanswerable question
    assert "[1]" in lines[0]["messages"][-1]["content"]
    flat = tmp_path / "flat.jsonl"
    export_examples(small_gold()[:1], runtime=runtime, collection="default", generator="extractive", out=flat,
                    fmt="prompt-completion")  # fmt: skip
    record = json.loads(flat.read_text())
    assert set(record) == {"prompt", "completion"} and "Question:" in record["prompt"]


def test_cli_writes_the_three_files(
    corpus_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAG_CHROMA_PATH", str(corpus_settings.chroma_path))
    gold = tmp_path / "gold.jsonl"
    gold.write_text("\n".join(json.dumps(q) for q in SMALL) + "\n")
    result = CliRunner().invoke(cli, ["run", str(gold), "--out", str(tmp_path / "o"), "-g", "extractive"])
    assert result.exit_code == 0, result.output
    assert {p.name for p in (tmp_path / "o").iterdir()} == {"report.json", "report.md", "ladder.png"}
    assert "hybrid" in result.output
    bad = CliRunner().invoke(cli, ["run", str(gold), "--out", str(tmp_path / "o"), "-c", "nothing-here"])
    assert bad.exit_code == 2 and "nothing-here" in bad.output


@pytest.fixture(scope="module")
def keyed(
    corpus_settings: Settings, embedder: Embedder, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    settings = corpus_settings.model_copy(
        update={"api_keys": SecretStr("ea:admin,er:read"), "eval_dir": tmp_path_factory.mktemp("eval")}
    )
    with TestClient(create_app(settings, embedder=embedder)) as client:
        yield client


def test_post_eval_for_admins_keeps_the_latest(keyed: TestClient) -> None:
    body = {"questions": SMALL, "generators": ["extractive"]}
    assert keyed.post("/v1/eval", json=body, headers={"Authorization": "Bearer er"}).status_code == 403
    admin = {"Authorization": "Bearer ea"}
    assert keyed.get("/v1/eval/latest", headers=admin).status_code == 404
    response = keyed.post("/v1/eval", json=body, headers=admin)
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["meta"]["questions"] == 3 and set(report["ladders"]) == {"extractive"}
    assert keyed.get("/v1/eval/latest", headers=admin).json() == report
    chart = keyed.get("/v1/eval/latest/ladder.png", headers=admin)
    assert chart.status_code == 200 and chart.content[:4] == b"\x89PNG"
    bad = keyed.post("/v1/eval", json={"questions": [{"question": "x?"}]}, headers=admin)
    assert bad.status_code == 400 and "needs 'sources'" in bad.json()["detail"]
