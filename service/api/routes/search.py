from __future__ import annotations

from fastapi import APIRouter

from service.answer import check_question, check_top_k
from service.api.deps import CallerDep, MetricsDep, RuntimeDep
from service.api.schemas import ErrorOut, SearchRequest, SearchResponse, SourceOut
from service.retrieve import Filters

router = APIRouter(prefix="/v1", tags=["search"])


@router.post(
    "/search", response_model=SearchResponse, responses={400: {"model": ErrorOut}, 404: {"model": ErrorOut}}
)
def search(
    body: SearchRequest, caller: CallerDep, runtime: RuntimeDep, metrics: MetricsDep
) -> SearchResponse:
    """Passages for a query, best first: dense and keyword results fused, neighbours merged."""
    query = check_question(body.query, runtime.settings)
    k = check_top_k(body.top_k, runtime.settings)
    filters = Filters.parse(body.filters)
    found = runtime.retriever(caller.check(body.collection)).search(query, k, filters)
    metrics.observe_stages(found.timings_ms)
    return SearchResponse(results=[SourceOut.of(s) for s in found.sources], timings_ms=found.timings_ms)
