from __future__ import annotations

from fastapi import APIRouter

from ingest.store import list_collections
from service.api.deps import CallerDep, RuntimeDep
from service.api.schemas import CollectionList, CollectionOut

router = APIRouter(prefix="/v1/collections", tags=["collections"])


@router.get("", response_model=CollectionList)
def collections(runtime: RuntimeDep, caller: CallerDep) -> CollectionList:
    """The collections in the store the key may see, with their document and chunk counts."""
    out = []
    for name in caller.visible(list_collections(runtime.settings)):
        docs = runtime.store(name).documents()
        out.append(CollectionOut(name=name, documents=len(docs), chunks=sum(d.chunks for d in docs)))
    return CollectionList(collections=out)
