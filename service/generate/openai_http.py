"""The OpenAI-compatible HTTP generator: Ollama, vLLM, llama.cpp's server, LM Studio, OpenAI itself."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import httpx
import openai

from ingest.settings import Settings
from service.errors import GeneratorTimeout, GeneratorUnavailable
from service.generate.base import STOP, accept_delta
from service.types import Generation, Prompt

# Tokens of chat framing (role markers, separators) per message; only used when estimating.
MESSAGE_OVERHEAD_TOKENS = 4


class OpenAIGenerator:
    """Answers through ``POST {llm_base_url}/chat/completions`` with the official ``openai`` SDK.

    Retries with backoff (connection errors, timeouts, 408/409/429/5xx) come from the SDK
    (``llm_retries``); every SDK or transport error leaves this class as ``GeneratorTimeout`` or
    ``GeneratorUnavailable``, including those raised while a stream is being read.

    Example::

        generator = OpenAIGenerator(Settings(generator="openai", llm_base_url="http://localhost:11434/v1"))
    """

    name = "openai"

    def __init__(self, settings: Settings, *, http_client: httpx.Client | None = None) -> None:
        if not settings.llm_base_url:
            raise GeneratorUnavailable(
                "the openai generator needs RAG_LLM_BASE_URL (e.g. http://localhost:11434/v1)"
            )
        self.base_url = settings.llm_base_url.rstrip("/")
        self.model = settings.llm_model
        self.context_tokens = settings.llm_context_tokens
        self.timeout_s = settings.llm_timeout_s
        # Unknown until a server refuses it; most ignore it silently, which the estimate covers.
        self._stream_usage = True
        # openai>=3 is typed for httpx2, its own fork of httpx, yet accepts httpx clients and timeouts
        # and converts them (openai/_httpx2.py); the project speaks httpx everywhere else.
        self._client = openai.OpenAI(
            base_url=self.base_url,
            api_key=settings.llm_api_key.get_secret_value() or "not-needed",
            # A dead host should fail fast even when answers may legitimately take a minute.
            timeout=httpx.Timeout(self.timeout_s, connect=min(self.timeout_s, 10.0)),  # type: ignore[arg-type]
            max_retries=settings.llm_retries,
            http_client=http_client,  # type: ignore[arg-type]
        )

    def close(self) -> None:
        """Close the connection pool (a caller-supplied ``http_client`` is closed too)."""
        self._client.close()

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """The one place SDK and transport errors become the service's generator errors."""
        where = f"LLM endpoint {self.base_url}"
        try:
            yield
        except (openai.APITimeoutError, httpx.TimeoutException) as exc:
            raise GeneratorTimeout(f"{where} did not answer within {self.timeout_s:g} s") from exc
        except (openai.APIConnectionError, httpx.TransportError) as exc:
            raise GeneratorUnavailable(f"cannot reach {where}: {exc}") from exc
        except openai.NotFoundError as exc:
            raise GeneratorUnavailable(
                f"{where} answered 404: model {self.model!r} not found, or the URL lacks /v1 ({_detail(exc)})"
            ) from exc
        except openai.APIStatusError as exc:  # 429, 5xx, and 4xx refusals such as context overflow
            raise GeneratorUnavailable(f"{where} answered HTTP {exc.status_code}: {_detail(exc)}") from exc
        except openai.APIError as exc:  # an error event mid-stream, a malformed body
            raise GeneratorUnavailable(f"{where} failed: {exc.message}") from exc
        except httpx.HTTPError as exc:
            raise GeneratorUnavailable(f"{where} failed: {exc}") from exc

    def generate(self, prompt: Prompt, *, max_tokens: int) -> Generation:
        with self._errors():
            response = self._client.chat.completions.create(
                model=self.model,
                messages=cast(Any, prompt.messages),
                max_tokens=max_tokens,
                temperature=0,
                stop=STOP,
            )
        if not response.choices:
            raise GeneratorUnavailable(f"LLM endpoint {self.base_url} returned no choices")
        text = (response.choices[0].message.content or "").strip()
        usage = response.usage
        return Generation(
            text=text,
            prompt_tokens=usage.prompt_tokens if usage else self._estimate_prompt(prompt),
            completion_tokens=usage.completion_tokens if usage else self.count_tokens(text),
            model=self.model,
            generator=self.name,
        )

    def stream(self, prompt: Prompt, *, max_tokens: int) -> Iterator[str | Generation]:
        parts: list[str] = []
        usage: openai.types.CompletionUsage | None = None
        with self._errors():
            chunks = self._open_stream(prompt, max_tokens)
            try:
                for chunk in chunks:
                    if chunk.usage is not None:
                        usage = chunk.usage
                    if not chunk.choices:
                        continue
                    if (delta := accept_delta(parts, chunk.choices[0].delta.content)) is not None:
                        yield delta
            finally:
                # Give the connection back even when the caller stops reading early.
                chunks.close()
        text = "".join(parts)
        yield Generation(
            text=text,
            prompt_tokens=usage.prompt_tokens if usage else self._estimate_prompt(prompt),
            completion_tokens=usage.completion_tokens if usage else self.count_tokens(text),
            model=self.model,
            generator=self.name,
        )

    def _open_stream(self, prompt: Prompt, max_tokens: int) -> openai.Stream[Any]:
        """Start a streamed completion, asking for usage in the last chunk where the server allows it."""
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": cast(Any, prompt.messages),
            "max_tokens": max_tokens,
            "temperature": 0,
            "stop": STOP,
            "stream": True,
        }
        if self._stream_usage:
            try:
                return cast(
                    openai.Stream[Any],
                    self._client.chat.completions.create(**kwargs, stream_options={"include_usage": True}),
                )
            except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
                # Some older servers reject the field outright; remember and ask without it.
                if "stream_options" not in str(exc):
                    raise
                self._stream_usage = False
        return cast(openai.Stream[Any], self._client.chat.completions.create(**kwargs))

    def count_tokens(self, text: str) -> int:
        # An estimate: the endpoint's tokenizer is not reachable through the OpenAI API. English text
        # runs about 4 characters a token for modern BPE vocabularies; 3.5 errs on the high side, so
        # prompt budgets stay inside the context window.
        return math.ceil(len(text) / 3.5)

    def _estimate_prompt(self, prompt: Prompt) -> int:
        return sum(self.count_tokens(m.get("content", "")) + MESSAGE_OVERHEAD_TOKENS for m in prompt.messages)


def _detail(exc: openai.APIStatusError) -> str:
    """The server's own error message when its body has one, else the SDK's."""
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
        if body.get("detail"):
            return str(body["detail"])
    return exc.message
