"""Fuzzing: schemathesis drives every route of the service's own OpenAPI document, with an admin key.

Every response must be one the route declares, with the declared status, content type and schema,
and no 5xx but the documented 503/504 (a store or generator that cannot answer). Each operation gets
a handful of valid and of invalid generated requests, so the whole run stays within seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from pydantic import SecretStr
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from ingest.embed import Embedder
from ingest.pipeline import Ingestor
from ingest.settings import Settings
from service.api.app import create_app
from tests.conftest import CORPUS, serve_app

ADMIN_KEY = "fuzz-admin-5b1e"
DOCUMENTS = ["hr/pto-policy.md", "hr/remote-work-policy-2025.md", "it-security/password-policy-2022.txt"]
# Generated requests per operation and mode: a bound on the run's time, not a claim of coverage.
EXAMPLES = 6
# Every operation of the OpenAPI document; test_every_route_is_fuzzed keeps this list complete.
OPERATIONS = [
    "POST /v1/search",
    "POST /v1/query",
    "GET /v1/collections",
    "GET /v1/whoami",
    "GET /v1/models",
    "POST /v1/chat/completions",
    "POST /v1/documents",
    "GET /v1/documents",
    "DELETE /v1/documents/{document_id}",
    "POST /v1/eval",
    "GET /v1/eval/latest",
    "GET /v1/eval/latest/ladder.png",
    "GET /healthz",
    "GET /readyz",
    "GET /metrics",
]
# Rules no JSON schema states, so a schema-valid request may still get a 400 with its reason: a
# conversation must end with a user message; a gold question's fields depend on one another (an
# unanswerable one has no sources, an answerable one needs them).
SEMANTIC_400 = {"POST /v1/chat/completions", "POST /v1/eval"}
# Every part of a multipart upload is bytes: a file "of the wrong type" is still a file, which is
# indexed or skipped with a reason, so a generated "invalid" upload is accepted by design.
ANY_BYTES = {"POST /v1/documents"}
CONFIG = {
    "checks": {
        # 503 and 504 are the documented answers of a store or generator that cannot answer.
        "not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", "503", "504"]},
    },
}


@pytest.fixture(scope="module")
def fuzz_schema(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[Any]:
    """The OpenAPI schema of a live service over three documents, with its base URL and admin key."""
    root: Path = tmp_path_factory.mktemp("fuzz")
    service_settings = Settings(
        chroma_path=root / "chroma",
        eval_dir=root / "eval",
        generator="extractive",
        api_keys=SecretStr(f"{ADMIN_KEY}:admin"),
        # An evaluation runs while the request waits: keep a fuzzed one small.
        max_eval_questions=2,
    )
    report = Ingestor(service_settings, embedder=embedder).ingest_paths([CORPUS / d for d in DOCUMENTS])
    assert report.count("added") == len(DOCUMENTS), report.of("failed")
    app = create_app(service_settings, embedder=embedder)
    with serve_app(app) as url:
        schema = schemathesis.openapi.from_dict(app.openapi(), config=SchemathesisConfig.from_dict(CONFIG))
        schema.config.update(base_url=url, headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        yield schema


def test_every_route_is_fuzzed(fuzz_schema: Any) -> None:
    labels = {result.ok().label for result in fuzz_schema.get_all_operations()}
    assert labels == set(OPERATIONS)


@pytest.mark.slow
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
@pytest.mark.parametrize("label", OPERATIONS)
def test_route_answers_as_declared(fuzz_schema: Any, label: str, mode: GenerationMode) -> None:
    operation = fuzz_schema.find_operation_by_label(label)
    excluded = [positive_data_acceptance] if label in SEMANTIC_400 else []
    if label in ANY_BYTES:
        excluded.append(negative_data_rejection)

    @given(case=operation.as_strategy(mode))
    @settings(
        max_examples=EXAMPLES,
        # The same requests every run, so CI does not fail on a find of its own; raise EXAMPLES and
        # drop this locally to search further.
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )
    def check(case: Any) -> None:
        case.call_and_validate(timeout=60, excluded_checks=excluded)

    try:
        check()
    except Unsatisfiable:
        if mode is GenerationMode.NEGATIVE and not list(operation.iter_parameters()) and not operation.body:
            pytest.skip("the operation takes no input, so no request to it is invalid")
        raise
