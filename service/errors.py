"""Errors of the query service. ``service/api/errors.py`` maps each to an HTTP status.

::

    RagError                     base; the message is shown to the client
    ├── BadRequest               a request the service cannot act on (bad filter, bad sizes)
    ├── NotFound                 nothing of that name (an evaluation report not run yet)
    ├── Unauthorized             no API key, or one the service does not know
    ├── Forbidden                a key whose role does not reach this route
    ├── RateLimited              a key (or client) over RAG_RATE_LIMIT_PER_MINUTE
    ├── IndexNotReady            the store or a model cannot be reached right now
    └── GeneratorError           the language model failed; the sources are still worth returning
        ├── GeneratorTimeout     it did not answer in time
        └── GeneratorUnavailable it refused, or is down

Ingest's own errors (``UnknownCollection``, ``UnknownDocument``, ``StoreError``...) pass through as
they are; the API maps them too.
"""

from __future__ import annotations


class RagError(Exception):
    """Base of every query-service error."""


class BadRequest(RagError):
    """The request is well-formed JSON but asks for something the service cannot do."""


class NotFound(RagError):
    """The thing asked for does not exist (collections and documents have their own errors)."""


class Unauthorized(RagError):
    """The request carries no API key, or an unknown one."""


class Forbidden(RagError):
    """The API key is valid but its role does not allow this route."""


class RateLimited(RagError):
    """The caller made more requests than ``RAG_RATE_LIMIT_PER_MINUTE`` allows."""

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class IndexNotReady(RagError):
    """The store, the embedder or the generator cannot be reached."""


class GeneratorError(RagError):
    """The generator failed."""


class GeneratorTimeout(GeneratorError):
    """The generator did not answer within the configured timeout."""


class GeneratorUnavailable(GeneratorError):
    """The generator is down, overloaded or refused the request."""
