"""Tracking URLs of one message, signed with `services.kit.tokens` and served by the gateway.

The gateway serves `GET /t/o/{token}` (open pixel), `GET /t/c/{token}` (click redirect) and
`GET`/`POST /u/{token}` (unsubscribe page and RFC 8058 one-click unsubscribe).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from services.kit.tokens import TokenSigner
from services.sequencer.templates.tracking import TrackingLinks


def tracking_links(
    signer: TokenSigner,
    public_base_url: str,
    *,
    message_id: str,
    contact_id: str,
    issued_at: int | None = None,
) -> TrackingLinks:
    """Return the `TrackingLinks` for one message, under the gateway's public https base URL."""
    parts = urlsplit(public_base_url)
    if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(f"public_base_url must be an https URL without query or fragment, got {public_base_url!r}")
    base = public_base_url.rstrip("/")

    def click_url(url: str) -> str:
        return f"{base}/t/c/{signer.sign_click(message_id, contact_id, url, issued_at=issued_at)}"

    def open_url() -> str:
        return f"{base}/t/o/{signer.sign_open(message_id, contact_id, issued_at=issued_at)}"

    def unsubscribe_url() -> str:
        return f"{base}/u/{signer.sign_unsubscribe(message_id, contact_id, issued_at=issued_at)}"

    return TrackingLinks(unsubscribe_url=unsubscribe_url, click_url=click_url, open_url=open_url)
