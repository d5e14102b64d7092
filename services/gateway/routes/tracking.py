"""Open pixel, click redirect and unsubscribe pages (no API key; signed tokens)."""

from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from services.gateway.delivery.service import Deliverer
from services.gateway.delivery.tables import DELIVERY_MODELS
from services.gateway.tracking import pages
from services.gateway.tracking.service import (
    TRACKING_TABLE,
    UnsubscribeMethod,
    Visitor,
    hit_now,
    record_engagement,
    record_unsubscribe,
    verify_token,
    visitor_of,
)
from services.kit.logging import get_logger
from services.kit.problems import invalid
from services.kit.tokens import MAX_TOKEN_LENGTH, TokenPurpose, TrackingClaims
from services.sequencer.engagement.classifier import TrackingHit

log = get_logger(__name__)

router = APIRouter(prefix="", tags=["tracking"])

Token = Annotated[str, Path(max_length=MAX_TOKEN_LENGTH, description="The signed token from the email's link")]

_PIXEL_RESPONSE = {
    200: {"description": "A 1x1 transparent GIF", "content": {"image/gif": {"schema": {"type": "string", "format": "binary"}}}}
}
_REDIRECT_RESPONSE = {
    302: {
        "description": "Redirect to the link signed into the token",
        "headers": {"Location": {"description": "The signed link", "schema": {"type": "string"}}},
    }
}
_FORM_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "List-Unsubscribe": {"type": "string", "enum": ["One-Click"], "description": "RFC 8058 one-click"},
                        "confirm": {"type": "string", "enum": ["unsubscribe"], "description": "Sent by the page's form"},
                    },
                }
            }
        },
    }
}


@router.get("/t/o/{token}", response_class=Response, responses=_PIXEL_RESPONSE)  # type: ignore[arg-type]
async def open_pixel(token: Token, request: Request) -> Response:
    """Record an open of the email and return a transparent pixel."""
    claims = verify_token(request.app.state.token_signer, token, TokenPurpose.OPEN)
    visitor = _visitor(request)
    await _record(request, claims, hit_now("open", visitor), visitor)
    return pages.pixel()


@router.get("/t/c/{token}", response_class=Response, status_code=302, responses=_REDIRECT_RESPONSE)  # type: ignore[arg-type]
async def click_redirect(token: Token, request: Request) -> Response:
    """Record a click and redirect to the link signed into the token, never to any other URL."""
    claims = verify_token(request.app.state.token_signer, token, TokenPurpose.CLICK)
    visitor = _visitor(request)
    url = claims.url or ""
    await _record(request, claims, hit_now("click", visitor, url), visitor)
    return pages.redirect(url)


@router.get("/u/{token}", response_class=HTMLResponse)
async def unsubscribe_page(token: Token, request: Request) -> HTMLResponse:
    """Show the unsubscribe confirmation form; fetching the page changes nothing."""
    verify_token(request.app.state.token_signer, token, TokenPurpose.UNSUBSCRIBE)
    return pages.unsubscribe_page(request.url.path, done=False)


@router.post("/u/{token}", response_class=HTMLResponse, openapi_extra=_FORM_BODY)
async def unsubscribe(token: Token, request: Request) -> HTMLResponse:
    """Unsubscribe the token's contact: the page's form, or RFC 8058 `List-Unsubscribe=One-Click`."""
    state = request.app.state
    claims = verify_token(state.token_signer, token, TokenPurpose.UNSUBSCRIBE)
    method = await _unsubscribe_method(request)
    row_id = await record_unsubscribe(state.db, claims, _visitor(request), method)
    log.info("tracking.unsubscribe_requested", contact_id=claims.contact_id, message_id=claims.message_id, method=method)

    # Try at once, so the page is accurate in the usual case; the worker retries a failure.
    deliverer = Deliverer(
        state.db, DELIVERY_MODELS, contacts=state.clients["contacts"], provider_http=None,
        max_backoff_s=state.settings.delivery_max_backoff_s,
    )
    await deliverer.deliver(TRACKING_TABLE, row_id, together=False)
    return pages.unsubscribe_page(request.url.path, done=True)


async def _record(request: Request, claims: TrackingClaims, hit: TrackingHit, visitor: Visitor) -> None:
    # The recipient gets the pixel or the redirect even while the database or Redis is down; the
    # hit is lost then, which is logged.
    state = request.app.state
    try:
        classified = await state.hit_classifier.classify(claims.message_id, hit)
        row_id = await record_engagement(state.db, claims, classified, visitor)
    except (DBAPIError, PoolTimeoutError, OSError) as error:
        log.error("tracking.record_failed", kind=hit.kind, message_id=claims.message_id, error=repr(error))
        return
    await state.delivery_queue.enqueue(TRACKING_TABLE, [row_id])


async def _unsubscribe_method(request: Request) -> UnsubscribeMethod:
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        fields = {name: str(value) for name, value in form.items()}
    else:
        fields = dict(parse_qsl((await request.body()).decode("utf-8", errors="replace")))

    if fields.get("List-Unsubscribe", "").strip() == "One-Click":
        return "one_click"
    if fields.get("confirm") == "unsubscribe":
        return "form"
    raise invalid("body", "send List-Unsubscribe=One-Click (RFC 8058) or confirm=unsubscribe from the page's form")


def _visitor(request: Request) -> Visitor:
    return visitor_of(request.headers.get("user-agent"), request.client.host if request.client else None)
