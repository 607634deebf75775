"""The one settings class for ragfirst, read from ``RAG_*`` environment variables and ``.env``.

It lives in ``ingest`` because both packages read it and ``service`` may import ``ingest``, never the
reverse. Build it through :func:`get_settings` in programs; tests build ``Settings(...)`` directly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PACKAGED_EMBED_MODEL = "all-MiniLM-L6-v2"
ROLES = ("read", "admin")
COLLECTION_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?$")


class Settings(BaseSettings):
    """Every knob of ragfirst. Each field reads ``RAG_<FIELD>`` from the environment.

    Example::

        settings = Settings(chroma_path=tmp_path / "chroma", collection="handbook")
    """

    model_config = SettingsConfigDict(
        env_prefix="RAG_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        # A bad RAG_API_KEYS or RAG_LLM_API_KEY must not be echoed into the boot log.
        hide_input_in_errors=True,
    )

    # Store
    chroma_path: Path = Field(default=Path("data/chroma"), description="Folder of the embedded Chroma store.")
    chroma_url: str | None = Field(
        default=None,
        description="URL of a Chroma server (http://host:8000); when set, chroma_path is unused.",
    )
    chroma_timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="Seconds to wait for the Chroma server on each call before the request fails (503).",
    )
    collection: str = Field(default="default", description="Collection used when none is named.")
    store_batch_size: int = Field(
        default=1000, ge=1, description="Chunks per write to Chroma (capped by Chroma's own limit)."
    )
    store_min_free_mb: float = Field(
        default=100.0,
        ge=0,
        description="Free disk space the embedded store keeps: a write that finds less fails with a "
        "clear error (Chroma hangs on a full disk). 0 turns the check off.",
    )

    # Embedding
    embed_model: str = Field(
        default=PACKAGED_EMBED_MODEL,
        description="Sentence-transformers model: the packaged all-MiniLM-L6-v2, or a local folder.",
    )
    embed_backend: Literal["onnx-int8", "torch"] = Field(
        default="onnx-int8",
        description="onnx-int8: ONNX Runtime with dynamic int8 weights for this CPU, about twice as "
        "fast, exported from embed_model once and cached in model_cache_dir; torch: the fp32 model.",
    )
    embed_device: str | None = Field(
        default=None, description="Torch device for the embedder (cpu, cuda); unset picks one."
    )
    model_cache_dir: Path | None = Field(
        default=None,
        description="Where models derived from embed_model (the ONNX int8 export) are kept; "
        "unset: $XDG_CACHE_HOME/ragfirst/models, else ~/.cache/ragfirst/models.",
    )
    embed_batch_size: int = Field(default=32, ge=1, le=4096)
    embed_query_prefix: str = Field(
        default="", description="Text put before every query (e5/bge models want 'query: ')."
    )
    embed_document_prefix: str = Field(
        default="", description="Text put before every embedded chunk ('passage: ' for e5)."
    )

    # Chunking
    chunk_max_tokens: int = Field(
        default=256,
        ge=32,
        description="Upper bound of a chunk in the embedder's word pieces, title and section "
        "prefix included; lowered to the model's own limit when that is smaller.",
    )
    chunk_overlap_tokens: int = Field(default=32, ge=0)
    max_heading_tokens: int = Field(
        default=64, ge=8, description="Longest title + section prefix kept in the embedded text."
    )

    # Input limits
    max_file_mb: float = Field(default=50.0, gt=0, description="Files larger than this are skipped.")

    # Generation (service)
    generator: Literal["local", "openai", "extractive"] = Field(
        default="local", description="Who writes answers; a request may pick another."
    )
    local_model_path: str | None = Field(
        default=None, description="GGUF file for the local generator; unset: the packaged SmolLM2-135M."
    )
    local_context_tokens: int = Field(default=4096, ge=512, description="Context window of the local model.")
    local_threads: int | None = Field(default=None, ge=1, description="CPU threads for the local model.")
    llm_base_url: str | None = Field(
        default=None, description="OpenAI-compatible endpoint, e.g. http://localhost:11434/v1 (Ollama)."
    )
    llm_model: str = Field(
        default="smollm2", description="Model name sent to the OpenAI-compatible endpoint."
    )
    llm_api_key: SecretStr = Field(default=SecretStr("not-needed"))
    llm_timeout_s: float = Field(default=60.0, gt=0)
    llm_retries: int = Field(default=2, ge=0, le=10)
    llm_context_tokens: int = Field(
        default=8192, ge=512, description="Context window of the endpoint's model."
    )
    max_answer_tokens: int = Field(default=256, ge=16, le=4096)

    # Retrieval and answers (service)
    top_k: int = Field(default=5, ge=1, le=50, description="Sources retrieved when a request names none.")
    max_top_k: int = Field(default=50, ge=1, le=1000)
    relevance_floor: float = Field(
        default=0.3,
        ge=-1.0,
        le=1.0,
        description="Cosine similarity the best passage must reach, else the answer is 'not covered'.",
    )
    strict_citations: bool = Field(
        default=True, description="Drop answer sentences whose citations fail verification."
    )
    verify_similarity: float = Field(
        default=0.65, ge=0.0, le=1.0, description="Least similarity of a sentence to the quote it cites."
    )
    prompt_dir: Path | None = Field(
        default=None,
        description="Folder with system.md and examples.json; per-collection subfolders override.",
    )
    max_question_chars: int = Field(default=4000, ge=10)
    eval_dir: Path = Field(
        default=Path("data/eval"),
        description="Where POST /v1/eval keeps each collection's latest report (md, json, ladder.png).",
    )
    max_eval_questions: int = Field(
        default=500, ge=1, description="Most questions one POST /v1/eval may run."
    )

    # HTTP API (service)
    api_keys: SecretStr | None = Field(
        default=None,
        description="KEY:ROLE pairs separated by commas (roles: read, admin), sent as "
        "'Authorization: Bearer KEY'; KEY:ROLE:coll1|coll2 limits a key to those collections. "
        "Unset: the API is open to anyone who can reach it.",
    )
    rate_limit_per_minute: int | None = Field(
        default=None,
        ge=1,
        description="Requests each API key (or, with the API open, each client address) may make per "
        "minute, in bursts of up to as many; more get 429 with Retry-After. Unset: no limit.",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Browser origins allowed to call the API, comma-separated ('*' for any); unset: none.",
    )
    max_request_mb: float = Field(
        default=100.0, gt=0, description="Largest request body, uploads included; larger gets 413."
    )
    request_body_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="Seconds a request body may take beyond what RAG_REQUEST_MIN_BYTES_PER_S allows; "
        "a client slower than that, or silent that long, gets 408 and the connection is closed.",
    )
    request_min_bytes_per_s: float = Field(
        default=1024.0, ge=0, description="Slowest average rate at which a request body may arrive."
    )
    log_format: Literal["json", "text"] = Field(
        default="json", description="json: one object per line, with the request id; text: for people."
    )
    log_level: str = Field(default="info", description="debug, info, warning or error.")

    @field_validator("collection")
    @classmethod
    def _collection_name(cls, value: str) -> str:
        return validate_collection_name(value)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [o.strip() for o in value.split(",") if o.strip()]
        return value

    @field_validator("rate_limit_per_minute", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # docker-compose.yml passes ${RAG_RATE_LIMIT_PER_MINUTE:-}: set but empty means no limit.
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("api_keys")
    @classmethod
    def _keys_parse(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_api_keys(value.get_secret_value())
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.chunk_overlap_tokens >= self.chunk_max_tokens // 2:
            raise ValueError("chunk_overlap_tokens must be under half of chunk_max_tokens")
        if self.generator == "openai" and not self.llm_base_url:
            raise ValueError("RAG_GENERATOR=openai needs RAG_LLM_BASE_URL (e.g. http://localhost:11434/v1)")
        if self.top_k > self.max_top_k:
            raise ValueError("top_k must not exceed max_top_k")
        return self

    @property
    def key_specs(self) -> dict[str, ApiKey]:
        """Each configured API key with its role and collections; empty when the API is open."""
        return parse_api_keys(self.api_keys.get_secret_value()) if self.api_keys else {}

    @property
    def max_request_bytes(self) -> int:
        return int(self.max_request_mb * 1024 * 1024)

    @property
    def max_file_bytes(self) -> int:
        return int(self.max_file_mb * 1024 * 1024)

    @property
    def store_kind(self) -> Literal["server", "embedded"]:
        return "server" if self.chroma_url else "embedded"


@dataclass(frozen=True)
class ApiKey:
    """What one API key may do: its role, and the collections it may see (``None``: every one).

    ``entry`` is the key's position in ``RAG_API_KEYS``, a name for it that is safe to log.
    """

    role: str
    collections: frozenset[str] | None = None
    entry: int = field(default=0, compare=False)


def parse_api_keys(raw: str) -> dict[str, ApiKey]:
    """``"k1:admin,k2:read:hr|legal"`` as ``{"k1": ApiKey("admin"), "k2": ApiKey("read", {hr, legal})}``.

    An entry is ``KEY:ROLE`` or ``KEY:ROLE:COLLECTIONS`` (names joined by ``|``). A key may itself
    hold colons: the role is the last part, or the one before the collections.

    :raises ValueError: an entry without a role, an unknown role, a bad collection name, an entry
        that reads both ways, or a key given twice. The message names the entry by position, never
        the key itself, since errors end up in logs.
    """
    from ingest.errors import InvalidCollectionName

    keys: dict[str, ApiKey] = {}
    for i, entry in enumerate((p.strip() for p in raw.split(",")), start=1):
        if not entry:
            continue
        parts = [p.strip() for p in entry.split(":")]
        limited = len(parts) >= 3 and parts[-2] in ROLES
        if limited and parts[-1] in ROLES:
            # "k:read:admin": key "k" limited to a collection named admin, or key "k:read" with role
            # admin? Guessing wrong would hand out admin rights, so neither is guessed.
            raise ValueError(
                f"RAG_API_KEYS entry {i} reads both as KEY:ROLE and as KEY:ROLE:COLLECTIONS; "
                "rename the key or the collection"
            )
        if limited:
            key, role = ":".join(parts[:-2]), parts[-2]
            names = [n.strip() for n in parts[-1].split("|")]
            if not any(names):
                raise ValueError(f"RAG_API_KEYS entry {i} names no collections after its role")
            try:
                collections: frozenset[str] | None = frozenset(
                    validate_collection_name(n) for n in names if n
                )
            except InvalidCollectionName as exc:
                raise ValueError(f"RAG_API_KEYS entry {i}: {exc}") from None
        else:
            key, role, collections = ":".join(parts[:-1]), parts[-1], None
        if len(parts) < 2 or not key:
            raise ValueError(f"RAG_API_KEYS entry {i} is not KEY:ROLE")
        if role not in ROLES:
            raise ValueError(f"RAG_API_KEYS entry {i} has role {role!r}; use one of {', '.join(ROLES)}")
        if key in keys:
            raise ValueError(f"RAG_API_KEYS entry {i} repeats a key given before")
        keys[key] = ApiKey(role, collections, entry=i)
    return keys


def validate_collection_name(name: str) -> str:
    """Return ``name`` if it can name a collection.

    :raises InvalidCollectionName: (a ``ValueError``) saying what is allowed.
    """
    from ingest.errors import InvalidCollectionName

    if not COLLECTION_NAME.match(name):
        raise InvalidCollectionName(
            f"invalid collection name {name!r}: use 1-63 letters, digits, '-' or '_', "
            "starting and ending with a letter or digit"
        )
    return name


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
