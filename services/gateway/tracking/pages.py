"""Responses of the tracking routes: the pixel, the redirect, and the unsubscribe pages."""

from pathlib import Path

from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

# The smallest transparent GIF: 1x1 pixel, 43 bytes.
PIXEL_GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
# Each open and click must reach us again, never a cache.
NO_STORE = {"Cache-Control": "no-store, no-cache, must-revalidate, private", "Pragma": "no-cache", "Expires": "0"}
_PAGE_HEADERS = {
    **NO_STORE,
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
    "X-Content-Type-Options": "nosniff",
}

_templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
)


def pixel() -> Response:
    return Response(PIXEL_GIF, media_type="image/gif", headers=NO_STORE)


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=302, headers={**NO_STORE, "Referrer-Policy": "no-referrer"})


def unsubscribe_page(action: str, *, done: bool) -> HTMLResponse:
    """Render the confirmation form (`done` false) or the confirmation that it worked."""
    title = "You are unsubscribed" if done else "Unsubscribe"
    html = _templates.get_template("unsubscribe.html").render(title=title, action=action, done=done)
    return HTMLResponse(html, headers=_PAGE_HEADERS)
