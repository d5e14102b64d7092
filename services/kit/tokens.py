"""Signed, URL-safe tokens for the open pixel, click redirects and unsubscribe links.

The sequencer signs a token into each tracking URL of a message; the gateway verifies it when the
URL is fetched. A token is `<payload>.<signature>`, both base64url without padding. The payload is
compact JSON with the message id, the contact id, the issue time and, for clicks, the link URL. The
signature is HMAC-SHA256 over the payload bytes with a key derived from the secret and the token's
purpose, so an open token can never pass as a click or unsubscribe token.

Secrets rotate: sign with the first secret, verify with any of them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

MIN_SECRET_BYTES = 32
# URLs in email links stay well under this; anything longer is not a token we issued.
MAX_TOKEN_LENGTH = 4096
MAX_URL_LENGTH = 2048
_KEY_PREFIX = b"nurture.tracking-token."
_BASE64URL = re.compile(rb"[A-Za-z0-9_-]+")


class TokenPurpose(StrEnum):
    """Permission a token grants. Each purpose signs with its own derived key."""

    OPEN = "open"
    CLICK = "click"
    UNSUBSCRIBE = "unsubscribe"


class InvalidToken(ValueError):
    """A token is malformed, tampered with, of another purpose, or expired."""


@dataclass(frozen=True)
class TrackingClaims:
    """Contents of a valid token."""

    purpose: TokenPurpose
    message_id: str
    contact_id: str
    issued_at: int
    url: str | None = None


class TokenSigner:
    """Signs and verifies tracking tokens with one or more secrets (the first one signs)."""

    def __init__(self, secrets: Sequence[str | bytes]) -> None:
        if not secrets:
            raise ValueError("TokenSigner needs at least one secret")

        encoded = [secret.encode() if isinstance(secret, str) else bytes(secret) for secret in secrets]
        for index, secret in enumerate(encoded):
            if len(secret) < MIN_SECRET_BYTES:
                raise ValueError(f"secrets[{index}] is {len(secret)} bytes; use at least {MIN_SECRET_BYTES}")
        self._secrets = encoded

    def __repr__(self) -> str:
        return f"<TokenSigner secrets={len(self._secrets)}>"

    def sign_open(self, message_id: str, contact_id: str, *, issued_at: int | None = None) -> str:
        """Return a token for the open pixel of a message."""
        return self._sign(TokenPurpose.OPEN, message_id, contact_id, None, issued_at)

    def sign_click(self, message_id: str, contact_id: str, url: str, *, issued_at: int | None = None) -> str:
        """Return a token that redirects to `url`, which must be an absolute http(s) URL."""
        _check_url(url)
        return self._sign(TokenPurpose.CLICK, message_id, contact_id, url, issued_at)

    def sign_unsubscribe(self, message_id: str, contact_id: str, *, issued_at: int | None = None) -> str:
        """Return a token for the unsubscribe page and the one-click unsubscribe POST."""
        return self._sign(TokenPurpose.UNSUBSCRIBE, message_id, contact_id, None, issued_at)

    def verify(
        self,
        token: str,
        purpose: TokenPurpose,
        *,
        max_age_s: int | None = None,
        now: float | None = None,
    ) -> TrackingClaims:
        """Return the claims of a valid token of `purpose`.

        Raises:
            InvalidToken: malformed, signed with no known secret or for another purpose, older than
                `max_age_s`, or a click token whose URL is not http(s).
        """
        payload_part, signature = _split(token)
        if not any(hmac.compare_digest(signature, _mac(secret, purpose, payload_part)) for secret in self._secrets):
            raise InvalidToken(f"token signature is invalid for purpose {purpose.value!r}")

        claims = _decode_claims(purpose, payload_part)
        if max_age_s is not None:
            age = (time.time() if now is None else now) - claims.issued_at
            if age > max_age_s:
                raise InvalidToken(f"token expired: issued {int(age)} s ago, accepted for {max_age_s} s")
        return claims

    def _sign(
        self,
        purpose: TokenPurpose,
        message_id: str,
        contact_id: str,
        url: str | None,
        issued_at: int | None,
    ) -> str:
        _check_id(message_id, "message_id")
        _check_id(contact_id, "contact_id")
        payload: dict[str, str | int] = {
            "m": message_id,
            "c": contact_id,
            "t": int(time.time()) if issued_at is None else issued_at,
        }
        if url is not None:
            payload["u"] = url

        payload_part = _b64encode(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())
        signature = _mac(self._secrets[0], purpose, payload_part)
        return f"{payload_part.decode()}.{_b64encode(signature).decode()}"


def _mac(secret: bytes, purpose: TokenPurpose, payload_part: bytes) -> bytes:
    key = hmac.new(secret, _KEY_PREFIX + purpose.value.encode(), hashlib.sha256).digest()
    return hmac.new(key, payload_part, hashlib.sha256).digest()


def _split(token: str) -> tuple[bytes, bytes]:
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken("token is missing or too long")

    parts = token.split(".")
    if len(parts) != 2 or not all(parts):
        raise InvalidToken("token must have two dot-separated parts")
    payload_part = parts[0].encode("ascii", errors="replace")
    return payload_part, _b64decode(parts[1])


def _decode_claims(purpose: TokenPurpose, payload_part: bytes) -> TrackingClaims:
    try:
        payload = json.loads(_b64decode(payload_part))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidToken("token payload is not valid JSON") from error

    if not isinstance(payload, dict):
        raise InvalidToken("token payload is not an object")
    message_id, contact_id, issued_at, url = payload.get("m"), payload.get("c"), payload.get("t"), payload.get("u")
    if not isinstance(message_id, str) or not isinstance(contact_id, str) or not isinstance(issued_at, int):
        raise InvalidToken("token payload lacks message id, contact id or issue time")

    if purpose is TokenPurpose.CLICK:
        if not isinstance(url, str):
            raise InvalidToken("click token carries no URL")
        try:
            _check_url(url)
        except ValueError as error:
            raise InvalidToken(str(error)) from error
    elif url is not None:
        raise InvalidToken(f"{purpose.value} token must not carry a URL")
    return TrackingClaims(purpose, message_id, contact_id, issued_at, url)


def _b64encode(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _b64decode(text: bytes | str) -> bytes:
    raw = text.encode("ascii", errors="replace") if isinstance(text, str) else text
    if not _BASE64URL.fullmatch(raw):
        raise InvalidToken("token is not valid base64url")
    try:
        decoded = base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))
    except (binascii.Error, ValueError) as error:
        raise InvalidToken("token is not valid base64url") from error

    # Several texts decode to the same bytes because the last character has unused low bits. Only the
    # spelling this module writes is accepted, so a token has exactly one valid form.
    if _b64encode(decoded) != raw:
        raise InvalidToken("token is not in canonical base64url")
    return decoded


def _check_id(value: str, name: str) -> None:
    if not value or len(value) > 200:
        raise ValueError(f"{name} must be 1 to 200 characters, got {len(value)}")


def _check_url(url: str) -> None:
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"link URL is longer than {MAX_URL_LENGTH} characters")
    if any(ord(character) < 0x20 or character == "\x7f" for character in url):
        raise ValueError("link URL contains control characters")

    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError(f"link URL must be an absolute http(s) URL, got {url[:80]!r}")
