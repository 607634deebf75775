"""Every request dependency, once, as ``Annotated`` aliases over the app's runtime, and the two
access guards routers declare: ``READ`` (search, query, collection names) and ``ADMIN`` (documents,
evaluation)."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request, params

from ingest.settings import Settings
from service.errors import Forbidden, Unauthorized
from service.metrics import Metrics
from service.runtime import Runtime

_RANK = {"read": 1, "admin": 2}


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


def role_of(token: str, keys: dict[str, str]) -> str | None:
    """The role of ``token`` among ``keys``, comparing against every key in constant time so that
    neither a match's position nor a common prefix shows in the response time."""
    found: str | None = None
    given = token.encode()
    for key, role in keys.items():
        if hmac.compare_digest(given, key.encode()):
            found = role
    return found


def caller_role(request: Request) -> str:
    """``admin`` when no keys are configured (the API is open), else the role of the bearer key.

    :raises Unauthorized: no ``Authorization: Bearer`` header, or a key that is not configured.
    """
    keys = get_runtime(request).keys
    if not keys:
        return "admin"
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("an API key is required: send 'Authorization: Bearer KEY'")
    role = role_of(token.strip(), keys)
    if role is None:
        raise Unauthorized("unknown API key")
    return role


def _require(needed: str) -> params.Depends:
    def guard(request: Request) -> None:
        role = caller_role(request)
        if _RANK[role] < _RANK[needed]:
            raise Forbidden(f"this route needs an {needed} key; yours is {role}")

    guard.__name__ = f"require_{needed}"
    depends: params.Depends = Depends(guard)
    return depends


READ = _require("read")
ADMIN = _require("admin")
