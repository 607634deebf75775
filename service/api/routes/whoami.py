from __future__ import annotations

from fastapi import APIRouter, Request

from service.api.deps import caller_role, get_runtime
from service.api.schemas import WhoAmI

router = APIRouter(prefix="/v1", tags=["access"])


@router.get("/whoami", response_model=WhoAmI)
def whoami(request: Request) -> WhoAmI:
    """The role of the key sent (``admin`` for everyone when no keys are configured), so that a
    client shows only what that role may use."""
    return WhoAmI(role=caller_role(request), keys_required=bool(get_runtime(request).keys))
