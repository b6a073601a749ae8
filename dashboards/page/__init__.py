"""The web page at `/`: static files that read the JSON API and draw with Chart.js.

`index.html` and `static/` are the page's own; `static/shared/` serves the per-feature drift
view and the vendored chart library from `infermon.html`, the one copy that
`infermon drift --html` inlines too. Nothing here reads the database.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles

from infermon import html

FOLDER = Path(__file__).parent
# The page loads only what this server serves: a script or image from elsewhere is refused
# by the browser (and the test in headless Chromium would see the refusal).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",  # a new version of the page is seen at once
}
_TYPES = {".js": "text/javascript", ".css": "text/css", ".md": "text/markdown"}

router = APIRouter(include_in_schema=False)


@router.get("/")
def index() -> FileResponse:
    return FileResponse(FOLDER / "index.html", media_type="text/html", headers=_HEADERS)


@router.get("/static/shared/{name:path}")
def shared(name: str) -> Response:
    """Only the files `infermon.html` lists: not the rest of its package."""
    if name not in html.SHARED_FILES:
        return Response(status_code=404)
    path = html.folder() / name
    return FileResponse(path, media_type=_TYPES[path.suffix], headers=_HEADERS)


def static_files() -> StaticFiles:
    """The page's own scripts and styles, for `app.mount("/static", ...)`."""
    return StaticFiles(directory=FOLDER / "static")
