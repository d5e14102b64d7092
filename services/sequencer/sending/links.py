"""Tracking URLs of one message, signed with `services.kit.tokens` and served by the gateway.

The gateway serves `GET /t/o/{token}` (open pixel), `GET /t/c/{token}` (click redirect) and
`GET`/`POST /u/{token}` (unsubscribe page and RFC 8058 one-click unsubscribe).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from services.kit.tokens import TokenSigner
from services.sequencer.templates.tracking import TrackingLinks


def is_loopback_host(host: str | None) -> bool:
    """Return whether `host` names this machine (localhost, 127.0.0.0/8 or ::1)."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def secure_or_local(url: str) -> bool:
    """Return whether `url` is https, or http to a loopback host as in local development.

    No mail client outside this machine can reach a loopback URL, so plain http there exposes nothing.
    """
    parts = urlsplit(url)
    return parts.scheme == "https" or (parts.scheme == "http" and is_loopback_host(parts.hostname))


def tracking_links(
    signer: TokenSigner,
    public_base_url: str,
    *,
    message_id: str,
    contact_id: str,
    issued_at: int | None = None,
) -> TrackingLinks:
    """Return the `TrackingLinks` for one message, under the gateway's public base URL.

    The base URL must be https, except plain http to a loopback host for local development.
    """
    parts = urlsplit(public_base_url)
    if not secure_or_local(public_base_url) or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(
            "public_base_url must be an https URL (plain http only on a loopback host) without query or "
            f"fragment, got {public_base_url!r}"
        )
    base = public_base_url.rstrip("/")

    def click_url(url: str) -> str:
        return f"{base}/t/c/{signer.sign_click(message_id, contact_id, url, issued_at=issued_at)}"

    def open_url() -> str:
        return f"{base}/t/o/{signer.sign_open(message_id, contact_id, issued_at=issued_at)}"

    def unsubscribe_url() -> str:
        return f"{base}/u/{signer.sign_unsubscribe(message_id, contact_id, issued_at=issued_at)}"

    return TrackingLinks(unsubscribe_url=unsubscribe_url, click_url=click_url, open_url=open_url)
