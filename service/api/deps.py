"""Every request dependency, once, as ``Annotated`` aliases over the app's runtime."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ingest.settings import Settings
from service.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def get_settings_dep(request: Request) -> Settings:
    return get_runtime(request).settings


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
