"""The three generators against real parts: SmolLM2 in process, llama.cpp's OpenAI-compatible server and
the real embedder. ``httpx.MockTransport`` stands in only for endpoint faults a real server cannot show
on demand (503, 429, 404, timeouts, errors mid-stream).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from ingest.embed import Embedder
from ingest.settings import Settings
from service.errors import GeneratorTimeout, GeneratorUnavailable
from service.generate import Generator, make_generator
from service.generate.extractive import NOT_COVERED, ExtractiveGenerator, split_sentences
from service.generate.local import PACKAGED_GGUF, LocalGenerator
from service.generate.openai_http import OpenAIGenerator
from service.types import Generation, Prompt, Source
from tests.conftest import free_port

MAX_TOKENS = 32
SYSTEM = (
    "You answer questions using only the numbered sources. End every sentence with the number of the "
    "source it comes from, like this: [1]. If the sources do not answer, reply: The documents do not "
    "cover this."
)
KITCHEN = "The office kitchen is cleaned every Friday at 16:00. Please label any food you keep in the fridge."
VACATION = (
    "Full-time employees receive 25 days of paid vacation per calendar year. Unused vacation days "
    "expire on March 31 of the following year."
)
QUESTION = "How many days of paid vacation do full-time employees get per year?"


def make_prompt(question: str, texts: list[tuple[str, str]]) -> Prompt:
    """A prompt as the service builds one: system message, then the sources fenced and numbered."""
    sources = [
        Source(
            n=n,
            chunk_ids=(f"chunk-{n}",),
            document_id=f"doc-{n}",
            source=f"{title.lower().replace(' ', '-')}.md",
            title=title,
            section="",
            page=None,
            text=text,
            start=0,
            end=len(text),
            score=0.8,
        )
        for n, (title, text) in enumerate(texts, start=1)
    ]
    fenced = "\n\n".join(f'<source id="{s.n}" title="{s.title}">\n{s.text}\n</source>' for s in sources)
    messages = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"Sources:\n\n{fenced}\n\nQuestion: {question}"},
    ]
    return Prompt(question=question, messages=messages, sources=sources)


PROMPT = make_prompt(QUESTION, [("Office Guide", KITCHEN), ("Leave Policy", VACATION)])


def openai_settings(base_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {"generator": "openai", "llm_base_url": base_url, "llm_model": "smollm2"}
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(params=["local", "openai", "extractive"])
def generator(request: pytest.FixtureRequest, embedder: Embedder) -> Iterator[Generator]:
    if request.param == "local":
        yield request.getfixturevalue("local_generator")
        return
    if request.param == "openai":
        settings = openai_settings(request.getfixturevalue("llama_server"), llm_retries=0)
        built = make_generator("openai", settings, embedder=embedder)
        assert isinstance(built, OpenAIGenerator)
        yield built
        built.close()
        return
    yield make_generator("extractive", Settings(), embedder=embedder)


# --- the contract, for all three ------------------------------------------------------------------


def test_generate_returns_text_and_counts(generator: Generator) -> None:
    generation = generator.generate(PROMPT, max_tokens=MAX_TOKENS)
    assert generation.text.strip()
    assert generation.generator == generator.name
    assert generation.model == generator.model
    assert generation.completion_tokens > 0
    if generator.name != "extractive":
        assert generation.prompt_tokens > 0
        assert generation.completion_tokens <= MAX_TOKENS


def test_stream_yields_deltas_then_the_generation(generator: Generator) -> None:
    items = list(generator.stream(PROMPT, max_tokens=MAX_TOKENS))
    *deltas, final = items
    assert deltas
    assert all(isinstance(d, str) for d in deltas)
    assert isinstance(final, Generation)
    assert final.text == "".join(str(d) for d in deltas)
    assert final.text.strip()
    assert final.generator == generator.name
    assert final.completion_tokens > 0
    if generator.name != "extractive":
        assert final.prompt_tokens > 0


def test_count_tokens_and_context(generator: Generator) -> None:
    assert generator.count_tokens("") == 0
    short = generator.count_tokens("Vacation days")
    assert 0 < short < generator.count_tokens(VACATION)
    assert generator.context_tokens >= 512


# --- local ---------------------------------------------------------------------------------------


def test_local_loads_lazily_from_the_packaged_gguf(local_generator: LocalGenerator) -> None:
    fresh = LocalGenerator(Settings())
    assert fresh._llama is None  # constructing costs nothing; the first call loads
    assert fresh.model == PACKAGED_GGUF
    assert fresh.path is not None and fresh.path.is_file()
    assert local_generator.context_tokens == 4096


def test_local_serialises_concurrent_requests(local_generator: LocalGenerator) -> None:
    # Two request threads share one llama.cpp context: without the lock this corrupts or crashes.
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(local_generator.generate, PROMPT, max_tokens=12) for _ in range(2)]
        results = [f.result(timeout=60) for f in futures]
    assert results[0].text == results[1].text  # temperature 0 on the same prompt
    assert all(r.completion_tokens > 0 for r in results)


def test_local_missing_model_file_is_unavailable(tmp_path: Path) -> None:
    missing = LocalGenerator(Settings(local_model_path=f"{tmp_path}/nope.gguf"))
    assert missing.model == "nope.gguf"
    with pytest.raises(GeneratorUnavailable, match=r"nope\.gguf"):
        missing.generate(PROMPT, max_tokens=8)


# --- extractive -----------------------------------------------------------------------------------

CITED = re.compile(r"(.+?) ((?:\[\d+\])+)([.!?]?)(?= |$)")


def quoted(answer: str) -> list[tuple[str, list[int]]]:
    """The answer's sentences with their markers removed, and the source numbers each cites."""
    return [
        (body.strip() + end, [int(n) for n in re.findall(r"\d+", tags)])
        for body, tags, end in CITED.findall(answer)
    ]


def test_extractive_quotes_the_right_source_verbatim(embedder: Embedder) -> None:
    generator = ExtractiveGenerator(embedder)
    answer = generator.generate(PROMPT, max_tokens=MAX_TOKENS).text
    pieces = quoted(answer)
    assert pieces, answer
    assert "Full-time employees receive 25 days of paid vacation per calendar year." in [s for s, _ in pieces]
    for sentence, ns in pieces:
        assert ns == [2], answer
        assert sentence in VACATION  # word for word
    assert "[1]" not in answer
    assert generator.generate(PROMPT, max_tokens=MAX_TOKENS).text == answer  # deterministic


def test_extractive_without_sources_says_not_covered(embedder: Embedder) -> None:
    generator = ExtractiveGenerator(embedder)
    empty = make_prompt(QUESTION, [])
    assert generator.generate(empty, max_tokens=MAX_TOKENS).text == NOT_COVERED
    items = list(generator.stream(empty, max_tokens=MAX_TOKENS))
    assert items[0] == NOT_COVERED
    assert isinstance(items[-1], Generation) and items[-1].text == NOT_COVERED


def test_extractive_quotes_bullets_and_table_rows(embedder: Embedder) -> None:
    handbook = (
        "## Equipment\n\nEvery new hire receives:\n\n- a laptop with a docking station\n"
        "- a headset for calls\n\n| Item | Replacement cycle |\n|---|---|\n| Laptop | every 4 years |\n"
    )
    prompt = make_prompt("How often are laptops replaced?", [("Kitchen", KITCHEN), ("Handbook", handbook)])
    answer = ExtractiveGenerator(embedder).generate(prompt, max_tokens=MAX_TOKENS).text
    assert answer.startswith("Laptop | every 4 years [2].")


def test_split_sentences_keeps_wording() -> None:
    text = (
        "# Travel policy\n\nBook flights e.g. through the portal. Trains are preferred under 4 hours.\n"
        "Reports are due within 30 days of the end\nof the trip.\n\n"
        "* Taxis need a receipt\n1. Hotels up to 150 EUR a night.\n\n| Class | Allowed |\n| --- | --- |\n"
        "| Economy | yes |\n```\ncode\n```"
    )
    assert split_sentences(text) == [
        "Book flights e.g. through the portal.",
        "Trains are preferred under 4 hours.",
        "Reports are due within 30 days of the end of the trip.",
        "Taxis need a receipt",
        "Hotels up to 150 EUR a night.",
        "Class | Allowed",
        "Economy | yes",
    ]


# --- openai: real server faults ------------------------------------------------------------------


def test_openai_nothing_listening_is_unavailable_quickly() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    generator = OpenAIGenerator(openai_settings(url, llm_retries=0, llm_timeout_s=2.0))
    started = time.monotonic()
    with pytest.raises(GeneratorUnavailable, match=re.escape(url)) as info:
        generator.generate(PROMPT, max_tokens=8)
    with pytest.raises(GeneratorUnavailable):
        next(iter(generator.stream(PROMPT, max_tokens=8)))
    assert time.monotonic() - started < 5.0
    assert isinstance(info.value.__cause__, openai.APIConnectionError)


def test_make_generator_knows_three_names(embedder: Embedder) -> None:
    with pytest.raises(ValueError, match="unknown generator"):
        make_generator("gpt", Settings(), embedder=embedder)
    with pytest.raises(GeneratorUnavailable, match="RAG_LLM_BASE_URL"):
        make_generator("openai", Settings(), embedder=embedder)
    assert isinstance(make_generator("local", Settings(), embedder=embedder), LocalGenerator)


# --- openai: faults only a mock transport can stage ---------------------------------------------

FAKE_URL = "http://llm.invalid/v1"


def mocked(handler: Callable[[httpx.Request], httpx.Response]) -> tuple[OpenAIGenerator, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    client = httpx.Client(transport=httpx.MockTransport(record))
    settings = openai_settings(FAKE_URL, llm_retries=0, llm_timeout_s=5.0)
    return OpenAIGenerator(settings, http_client=client), seen


@pytest.mark.parametrize("status", [503, 429, 404])
def test_openai_refusals_are_unavailable(status: int) -> None:
    generator, seen = mocked(lambda _: httpx.Response(status, json={"error": {"message": "try later"}}))
    with pytest.raises(GeneratorUnavailable, match=re.escape(FAKE_URL)) as info:
        generator.generate(PROMPT, max_tokens=8)
    assert isinstance(info.value.__cause__, openai.APIStatusError)
    assert len(seen) == 1  # llm_retries=0: the SDK did not retry
    with pytest.raises(GeneratorUnavailable, match=str(status)):
        list(generator.stream(PROMPT, max_tokens=8))


def test_openai_read_timeout_is_a_timeout() -> None:
    def stall(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("no answer", request=request)

    generator, _ = mocked(stall)
    with pytest.raises(GeneratorTimeout, match=re.escape(FAKE_URL)) as info:
        generator.generate(PROMPT, max_tokens=8)
    assert isinstance(info.value.__cause__, openai.APITimeoutError)


def sse(*events: dict[str, object]) -> bytes:
    return b"".join(f"data: {json.dumps(e)}\n\n".encode() for e in events)


FIRST_CHUNK = {
    "id": "c1",
    "object": "chat.completion.chunk",
    "created": 0,
    "model": "smollm2",
    "choices": [
        {"index": 0, "delta": {"role": "assistant", "content": "Employees get"}, "finish_reason": None}
    ],
}


class _BreakingStream(httpx.SyncByteStream):
    """An event stream that sends one chunk, then fails the way a dying server does."""

    def __init__(self, request: httpx.Request, tail: bytes | None) -> None:
        self.request = request
        self.tail = tail

    def __iter__(self) -> Iterator[bytes]:
        yield sse(FIRST_CHUNK)
        if self.tail is None:
            raise httpx.ReadTimeout("stalled mid-answer", request=self.request)
        yield self.tail


@pytest.mark.parametrize(
    ("tail", "error"),
    [(None, GeneratorTimeout), (sse({"error": {"message": "model crashed"}}), GeneratorUnavailable)],
    ids=["read-timeout", "error-event"],
)
def test_openai_errors_mid_stream(tail: bytes | None, error: type[Exception]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        headers = {"content-type": "text/event-stream"}
        return httpx.Response(200, headers=headers, stream=_BreakingStream(request, tail))

    generator, _ = mocked(handler)
    stream = generator.stream(PROMPT, max_tokens=8)
    assert next(stream) == "Employees get"
    with pytest.raises(error, match=re.escape(FAKE_URL)):
        next(stream)


def test_openai_stream_retries_without_stream_options_when_refused() -> None:
    lock = threading.Lock()
    bodies: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        with lock:
            bodies.append(body)
        if "stream_options" in body:
            return httpx.Response(400, json={"error": {"message": "unknown field: stream_options"}})
        done = {**FIRST_CHUNK, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        content = sse(FIRST_CHUNK, done) + b"data: [DONE]\n\n"
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=content)

    generator, _ = mocked(handler)
    *deltas, final = generator.stream(PROMPT, max_tokens=8)
    assert deltas == ["Employees get"]
    assert isinstance(final, Generation)
    assert final.completion_tokens == generator.count_tokens("Employees get")  # estimated: no usage chunk
    list(generator.stream(PROMPT, max_tokens=8))
    assert ["stream_options" in b for b in bodies] == [True, False, False]  # asked once, then remembered
