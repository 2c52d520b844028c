"""The trace viewer: GET /ui (the page) and its script and style sheet, from the package's `chimera/ui` folder.

The files are public (they hold no data); the page asks for the API key and sends it on its own calls to
`/v1/traces…` and `/v1/tasks…`. Nothing is loaded from elsewhere (no fonts, scripts or CDNs), and the content
security policy says so to the browser, so the viewer works air-gapped.
"""

from functools import cache
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import Response

from chimera.api.errors import APIError

router = APIRouter(include_in_schema=False)
UI_FILES = {
    "index.html": "text/html; charset=utf-8",
    "viewer.js": "text/javascript; charset=utf-8",
    "viewer.css": "text/css; charset=utf-8",
}
UI_PATHS = frozenset({"/ui", "/ui/", *(f"/ui/{name}" for name in UI_FILES)})
HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "cache-control": "no-cache",  # revalidated, so that an upgraded server's viewer shows at once
}


@router.get("/ui")
@router.get("/ui/")
async def page() -> Response:
    """The viewer's single page (views are chosen by the URL's fragment: `#/trace/<id>`, `#/session/<id>`…)."""
    return _served("index.html")


@router.get("/ui/{name}")
async def asset(name: str) -> Response:
    """`viewer.js` or `viewer.css`; any other name is 404."""
    if name not in UI_FILES:
        raise APIError(404, f"no file {name} in the viewer", code="not_found")
    return _served(name)


def _served(name: str) -> Response:
    return Response(_read(name), media_type=UI_FILES[name], headers=HEADERS)


@cache
def _read(name: str) -> bytes:
    return (resources.files("chimera") / "ui" / name).read_bytes()
