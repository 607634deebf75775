"""Every error the service can raise has its HTTP status in the one table."""

from __future__ import annotations

import ingest.errors
import service.errors
from service.answer import GeneratorFailed
from service.api.errors import status_for
from service.errors import GeneratorTimeout, RagError


def subclasses(base: type) -> set[type]:
    found = set(base.__subclasses__())
    for cls in list(found):
        found |= subclasses(cls)
    return found


def test_every_error_maps_to_a_4xx_or_5xx_other_than_500() -> None:
    errors = subclasses(RagError) | subclasses(ingest.errors.IngestError)
    assert errors, "no error classes found"
    for cls in errors:
        if cls is GeneratorFailed:
            continue
        exc = cls("x")
        assert status_for(exc) != 500, f"{cls.__name__} has no status"
        assert 400 <= status_for(exc) < 600


def test_generator_failure_takes_its_cause_status() -> None:
    failed = GeneratorFailed(GeneratorTimeout("slow"), [])
    assert status_for(failed) == 504
    assert {service.errors.BadRequest("x").__class__} <= subclasses(RagError)
