from __future__ import annotations

from fastapi import APIRouter

from service.api.deps import CallerDep, RuntimeDep
from service.api.schemas import WhoAmI

router = APIRouter(prefix="/v1", tags=["access"])


@router.get("/whoami", response_model=WhoAmI)
def whoami(caller: CallerDep, runtime: RuntimeDep) -> WhoAmI:
    """The role of the key sent (``admin`` for everyone when no keys are configured) and the
    collections it is limited to, so that a client shows only what that key may use."""
    collections = sorted(caller.collections) if caller.collections is not None else None
    return WhoAmI(role=caller.role, keys_required=bool(runtime.keys), collections=collections)
