"""Prometheus metrics of one service process, served at ``/metrics``.

Each app gets its own registry, so several apps in one process (tests, a bench) never collide. With
``--workers N`` set ``PROMETHEUS_MULTIPROC_DIR`` to an empty folder shared by the workers and
``/metrics`` adds up all of them (prometheus-client's multiprocess mode); without it each worker
reports only itself.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

from service.answer import GeneratorFailed
from service.types import Answer

# Seconds; from a cached search (a few ms) to a slow CPU generation (tens of seconds).
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
RETRIEVAL_STAGES = ("embed", "search", "keyword", "fuse")


class Metrics:
    """The counters and histograms of the HTTP API and of answering."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "ragfirst_http_requests",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "ragfirst_http_request_duration_seconds",
            "HTTP request latency by route",
            ["method", "route"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.stage = Histogram(
            "ragfirst_stage_duration_seconds",
            "Time in each step of answering: embed, search, keyword, fuse (retrieval), prompt, generate, "
            "verify",
            ["stage"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "ragfirst_generator_tokens",
            "Tokens in prompts and completions",
            ["generator", "kind"],
            registry=r,
        )
        self.answers = Counter(
            "ragfirst_answers",
            "Answers by outcome: verified (all kept), trimmed (unsupported sentences removed), fallback "
            "(extractive replaced the model's text), not_covered",
            ["generator", "outcome"],
            registry=r,
        )
        self.citations = Counter(
            "ragfirst_citations",
            "Citations in answers, verified against their source or not",
            ["verified"],
            registry=r,
        )
        self.removed = Counter(
            "ragfirst_removed_sentences",
            "Answer sentences removed because their source does not support them",
            registry=r,
        )
        self.generator_errors = Counter(
            "ragfirst_generator_errors", "Generator timeouts and failures", ["error"], registry=r
        )

    def observe_failure(self, exc: GeneratorFailed) -> None:
        self.generator_errors.labels(type(exc.cause).__name__).inc()

    @contextmanager
    def counting_failures(self) -> Iterator[None]:
        """Count a generator failure raised inside the block, and let it go on."""
        try:
            yield
        except GeneratorFailed as exc:
            self.observe_failure(exc)
            raise

    def observe_stages(self, timings_ms: dict[str, float]) -> None:
        for stage, ms in timings_ms.items():
            self.stage.labels(stage).observe(ms / 1000)

    def observe_answer(self, answer: Answer) -> None:
        self.observe_stages(answer.timings_ms)
        if not answer.covered and not answer.fallback:
            outcome = "not_covered"
        elif answer.fallback:
            outcome = "fallback"
        else:
            outcome = "trimmed" if answer.removed else "verified"
        self.answers.labels(answer.generator, outcome).inc()
        self.tokens.labels(answer.generator, "prompt").inc(answer.prompt_tokens)
        self.tokens.labels(answer.generator, "completion").inc(answer.completion_tokens)
        for citation in answer.citations:
            self.citations.labels(str(citation.verified).lower()).inc()
        self.removed.inc(len(answer.removed))

    def render(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)
