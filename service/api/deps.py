"""Every request dependency, once, as ``Annotated`` aliases over the app's runtime; the caller
(``CallerDep``: who sent the request, which collections it may see); and the two access guards
routers declare: ``READ`` (search, query, collection names) and ``ADMIN`` (documents, evaluation).

Every route that names a collection passes it through ``caller.check(name)`` before touching the
store, so a key limited to some collections meets any other as a collection that does not exist.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import Depends, Request, params

from ingest.errors import UnknownCollection
from ingest.settings import Settings, validate_collection_name
from service.errors import Forbidden, Unauthorized
from service.metrics import Metrics
from service.runtime import Runtime

_RANK = {"read": 1, "admin": 2}
_V = TypeVar("_V")


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def get_settings_dep(request: Request) -> Settings:
    return get_runtime(request).settings


def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]


@dataclass(frozen=True)
class Caller:
    """Who sent a request: the key's role and the collections it may see (``None``: every one).

    ``name`` is what the rate limit counts by and what may be logged: ``key N`` (its position in
    ``RAG_API_KEYS``), or ``client ADDRESS`` when the API is open; never the key itself.
    """

    role: str
    collections: frozenset[str] | None
    name: str

    def may_see(self, collection: str) -> bool:
        return self.collections is None or collection in self.collections

    def check(self, collection: str) -> str:
        """``collection``, once it is a valid name this caller may see.

        :raises InvalidCollectionName: not a collection name (400, for every caller alike).
        :raises UnknownCollection: one the caller may not see, with the very message the store gives
            for a collection that does not exist, so that a limited key learns no other names.
        """
        name = validate_collection_name(collection)
        if not self.may_see(name):
            raise UnknownCollection(f"collection {name!r} does not exist")
        return name

    def visible(self, names: Iterable[str]) -> list[str]:
        """The names among ``names`` this caller may see, in their order."""
        return [n for n in names if self.may_see(n)]


def role_of(token: str, keys: Mapping[str, _V]) -> _V | None:
    """What ``keys`` holds for ``token``, comparing against every key in constant time so that
    neither a match's position nor a common prefix shows in the response time."""
    found: _V | None = None
    given = token.encode()
    for key, value in keys.items():
        if hmac.compare_digest(given, key.encode()):
            found = value
    return found


def resolve_caller(request: Request) -> Caller:
    """The caller of ``request``: an unlimited ``admin`` when no keys are configured (the API is
    open), else the bearer key's role and collections.

    :raises Unauthorized: no ``Authorization: Bearer`` header, or a key that is not configured.
    """
    keys = get_runtime(request).keys
    if not keys:
        address = request.client.host if request.client else "unknown"
        return Caller(role="admin", collections=None, name=f"client {address}")
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("an API key is required: send 'Authorization: Bearer KEY'")
    spec = role_of(token.strip(), keys)
    if spec is None:
        raise Unauthorized("unknown API key")
    return Caller(role=spec.role, collections=spec.collections, name=f"key {spec.entry}")


def admit(request: Request) -> Caller:
    """The caller, once its request is counted against ``RAG_RATE_LIMIT_PER_MINUTE``; what every
    ``/v1`` route and ``/mcp`` call first.

    :raises Unauthorized: see :func:`resolve_caller`.
    :raises RateLimited: the caller is over the limit.
    """
    caller = resolve_caller(request)
    limiter = get_runtime(request).limiter
    if limiter is not None:
        limiter.check(caller.name)
    return caller


# FastAPI resolves a dependency once per request, so the guard and the route share one admission.
CallerDep = Annotated[Caller, Depends(admit)]


def _require(needed: str) -> params.Depends:
    def guard(caller: CallerDep) -> None:
        if _RANK[caller.role] < _RANK[needed]:
            raise Forbidden(f"this route needs an {needed} key; yours is {caller.role}")

    guard.__name__ = f"require_{needed}"
    depends: params.Depends = Depends(guard)
    return depends


READ = _require("read")
ADMIN = _require("admin")
