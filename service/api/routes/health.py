from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from ingest.store import list_collections
from service.api.deps import MetricsDep, RuntimeDep
from service.api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
def readyz(runtime: RuntimeDep) -> JSONResponse:
    """The store answers, the embedder loads, and the configured generator is reachable."""
    checks: dict[str, str] = {}
    try:
        list_collections(runtime.settings)
        checks["store"] = "ok"
    except Exception as exc:  # any failure here is the answer, not an error
        checks["store"] = f"error: {exc}"
    try:
        runtime.embedder.embed_query("ready")
        checks["embedder"] = "ok"
    except Exception as exc:
        checks["embedder"] = f"error: {exc}"
    checks["generator"] = _generator_check(runtime)
    ok = all(v == "ok" for v in checks.values())
    body = Health(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
def metrics(metrics: MetricsDep) -> Response:
    """Prometheus metrics: requests and latency by route, time per answering step, tokens, and how
    citations and answers fared in verification."""
    return Response(metrics.render(), media_type=metrics.content_type)


def _generator_check(runtime: RuntimeDep) -> str:
    settings = runtime.settings
    if settings.generator == "extractive":
        return "ok"
    if settings.generator == "local":
        path = runtime.generator("local").path  # type: ignore[attr-defined]
        return "ok" if path and Path(path).is_file() else f"error: no GGUF file at {path}"
    import httpx

    try:
        key = settings.llm_api_key.get_secret_value()
        url = f"{str(settings.llm_base_url).rstrip('/')}/models"
        response = httpx.get(url, timeout=3.0, headers={"Authorization": f"Bearer {key}"})
        return "ok" if response.status_code < 500 else f"error: HTTP {response.status_code}"
    except httpx.HTTPError as exc:
        return f"error: {exc}"
