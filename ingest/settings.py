"""The one settings class for ragfirst, read from ``RAG_*`` environment variables and ``.env``.

It lives in ``ingest`` because both packages read it and ``service`` may import ``ingest``, never the
reverse. Build it through :func:`get_settings` in programs; tests build ``Settings(...)`` directly.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PACKAGED_EMBED_MODEL = "all-MiniLM-L6-v2"
COLLECTION_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?$")


class Settings(BaseSettings):
    """Every knob of ragfirst. Each field reads ``RAG_<FIELD>`` from the environment.

    Example::

        settings = Settings(chroma_path=tmp_path / "chroma", collection="handbook")
    """

    model_config = SettingsConfigDict(
        env_prefix="RAG_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
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

    @field_validator("collection")
    @classmethod
    def _collection_name(cls, value: str) -> str:
        return validate_collection_name(value)

    @model_validator(mode="after")
    def _overlap_below_size(self) -> Settings:
        if self.chunk_overlap_tokens >= self.chunk_max_tokens // 2:
            raise ValueError("chunk_overlap_tokens must be under half of chunk_max_tokens")
        return self

    @property
    def max_file_bytes(self) -> int:
        return int(self.max_file_mb * 1024 * 1024)

    @property
    def store_kind(self) -> Literal["server", "embedded"]:
        return "server" if self.chroma_url else "embedded"


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
