"""The one settings class for ragfirst, read from ``RAG_*`` environment variables and ``.env``.

It lives in ``ingest`` because both packages read it and ``service`` may import ``ingest``, never the
reverse. Build it through :func:`get_settings` in programs; tests build ``Settings(...)`` directly.
"""

from __future__ import annotations

import re
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
    collection: str = Field(default="default", description="Collection used when none is named.")
    store_batch_size: int = Field(
        default=1000, ge=1, description="Chunks per write to Chroma (capped by Chroma's own limit)."
    )

    # Embedding
    embed_model: str = Field(
        default=PACKAGED_EMBED_MODEL,
        description="Sentence-transformers model: the packaged all-MiniLM-L6-v2, or a local folder.",
    )
    embed_device: str | None = Field(
        default=None, description="Torch device for the embedder (cpu, cuda); unset picks one."
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
        "'Authorization: Bearer KEY'. Unset: the API is open to anyone who can reach it.",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Browser origins allowed to call the API, comma-separated ('*' for any); unset: none.",
    )
    max_request_mb: float = Field(
        default=100.0, gt=0, description="Largest request body, uploads included; larger gets 413."
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
    def key_roles(self) -> dict[str, str]:
        """Each configured API key with its role; empty when the API is open."""
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


def parse_api_keys(raw: str) -> dict[str, str]:
    """``"k1:admin,k2:read"`` as ``{"k1": "admin", "k2": "read"}``.

    :raises ValueError: a pair without a role, an unknown role, or a key given twice. The message
        names the pair by position, never the key itself, since errors end up in logs.
    """
    keys: dict[str, str] = {}
    for i, pair in enumerate((p.strip() for p in raw.split(",")), start=1):
        if not pair:
            continue
        key, sep, role = pair.rpartition(":")
        key, role = key.strip(), role.strip()
        if not sep or not key:
            raise ValueError(f"RAG_API_KEYS entry {i} is not KEY:ROLE")
        if role not in ROLES:
            raise ValueError(f"RAG_API_KEYS entry {i} has role {role!r}; use one of {', '.join(ROLES)}")
        if key in keys:
            raise ValueError(f"RAG_API_KEYS entry {i} repeats a key given before")
        keys[key] = role
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
