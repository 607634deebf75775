"""The heavy objects of one service process, built once and shared by every request.

Models load lazily on first use; stores, retrievers and generators are created per collection or
name on first request and kept.
"""

from __future__ import annotations

import threading

from ingest.embed import Embedder
from ingest.pipeline import Ingestor
from ingest.settings import Settings
from ingest.store import ChunkStore, open_store
from service.answer import AnswerContext
from service.errors import BadRequest
from service.generate import Generator, make_generator
from service.prompt import PromptSet
from service.ratelimit import RateLimiter
from service.retrieve import HybridRetriever


class Runtime:
    """Settings, API keys and the rate limiter, the embedder, the prompt files, and per-collection
    retrievers and ingestors."""

    def __init__(self, settings: Settings, *, embedder: Embedder | None = None) -> None:
        self.settings = settings
        self.keys = settings.key_specs
        per_minute = settings.rate_limit_per_minute
        self.limiter = RateLimiter(per_minute) if per_minute else None
        self.embedder = embedder or Embedder(settings)
        self.prompts = PromptSet.load(settings.prompt_dir)
        self.context = AnswerContext(settings, self.embedder, self.prompts)
        self._retrievers: dict[str, HybridRetriever] = {}
        self._ingestors: dict[str, Ingestor] = {}
        self._generators: dict[str, Generator] = {}
        self._lock = threading.Lock()

    def store(self, collection: str) -> ChunkStore:
        """:raises UnknownCollection: no such collection."""
        return self.retriever(collection).store

    def retriever(self, collection: str) -> HybridRetriever:
        """:raises UnknownCollection: no such collection."""
        with self._lock:
            retriever = self._retrievers.get(collection)
        if retriever is None:
            retriever = HybridRetriever(open_store(self.settings, collection, create=False), self.embedder)
            with self._lock:
                retriever = self._retrievers.setdefault(collection, retriever)
        return retriever

    def wrote(self, collection: str) -> None:
        """This process changed ``collection``: its keyword index checks the revision on next use."""
        with self._lock:
            retriever = self._retrievers.get(collection)
        if retriever is not None:
            retriever.keyword.invalidate()

    def ingestor(self, collection: str) -> Ingestor:
        """The ingestor of ``collection``, creating the collection on first upload."""
        with self._lock:
            ingestor = self._ingestors.get(collection)
            if ingestor is None:
                ingestor = Ingestor(self.settings, collection=collection, embedder=self.embedder)
                self._ingestors[collection] = ingestor
            return ingestor

    def generator(self, name: str | None = None) -> Generator:
        """:raises BadRequest: unknown generator name."""
        name = name or self.settings.generator
        with self._lock:
            generator = self._generators.get(name)
            if generator is None:
                try:
                    generator = make_generator(name, self.settings, embedder=self.embedder)
                except ValueError as exc:
                    raise BadRequest(str(exc)) from exc
                self._generators[name] = generator
            return generator

    def forget(self, collection: str) -> None:
        """Drop cached objects of a collection (after it is deleted)."""
        with self._lock:
            self._retrievers.pop(collection, None)
            self._ingestors.pop(collection, None)
