"""Answer generators: local (llama.cpp in process), openai (any OpenAI-compatible endpoint), extractive.

:func:`make_generator` is the only place that knows all three; everything else holds a
:class:`Generator`.
"""

from __future__ import annotations

from ingest.embed import Embedder
from ingest.settings import Settings
from service.generate.base import Generator

GENERATOR_NAMES = ("local", "openai", "extractive")

__all__ = ["GENERATOR_NAMES", "Generator", "make_generator"]


def make_generator(name: str, settings: Settings, *, embedder: Embedder) -> Generator:
    """A new generator by name. Build each once per process: the local one holds its model.

    :raises ValueError: for a name other than ``local``, ``openai`` or ``extractive``.
    :raises GeneratorUnavailable: for ``openai`` without ``llm_base_url``.
    """
    # Imported here so that importing the package costs neither the openai SDK nor llama.cpp.
    if name == "local":
        from service.generate.local import LocalGenerator

        return LocalGenerator(settings)
    if name == "openai":
        from service.generate.openai_http import OpenAIGenerator

        return OpenAIGenerator(settings)
    if name == "extractive":
        from service.generate.extractive import ExtractiveGenerator

        return ExtractiveGenerator(embedder)
    raise ValueError(f"unknown generator {name!r}: use one of {', '.join(GENERATOR_NAMES)}")
