"""The web page: plain HTML, CSS and JavaScript modules shipped in ``service/web/``, no build step."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

WEB = Path(__file__).resolve().parents[2] / "web"
router = APIRouter(include_in_schema=False)

# The page loads nothing from elsewhere and runs no inline script: a document text that slipped
# into the DOM as markup still could not run.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@router.get("/")
def index() -> FileResponse:
    return FileResponse(WEB / "index.html", media_type="text/html", headers=PAGE_HEADERS)


def static_files() -> StaticFiles:
    """``/static/...``: the page's scripts and styles."""
    return StaticFiles(directory=WEB, check_dir=False)
