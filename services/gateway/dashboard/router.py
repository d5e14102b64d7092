"""Serving the dashboard page and its static files, under a Content-Security-Policy.

The page contains no data and no key. Its script asks for an API key, keeps it in sessionStorage and
calls the public API from the browser. The policy allows scripts, styles and requests from this
origin only, so neither inline script nor a page of another host can run in it.
"""

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from services.kit.problems import NotFound

router = APIRouter(include_in_schema=False)

STATIC_DIR = Path(__file__).parent / "static"
# The files the page loads, with their media types; nothing else under static/ is served.
STATIC_FILES = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@router.get("/dashboard")
async def dashboard_page() -> FileResponse:
    """Serve the dashboard page."""
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)


@router.get("/dashboard/static/{name}")
async def dashboard_file(name: str) -> FileResponse:
    """Serve one of the dashboard's script, style sheet and icon."""
    media_type = STATIC_FILES.get(name)
    if media_type is None:
        raise NotFound(f"the dashboard has no file named {name!r}")
    return FileResponse(STATIC_DIR / name, media_type=media_type, headers=SECURITY_HEADERS)
