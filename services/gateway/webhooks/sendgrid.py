"""SendGrid Event Webhook: ECDSA P-256 signature over timestamp and raw body, batch mapping.

SendGrid signs `timestamp_header || raw_body` with ECDSA P-256 / SHA-256 and sends the DER signature
in base64. The body is signed byte for byte, trailing CR LF included, so it is never stripped,
decoded or re-serialised before the check.
"""

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ec import ECDSA, EllipticCurvePublicKey
from cryptography.hazmat.primitives.hashes import SHA256

from ._http import lower_headers
from ._mapping import (
    InvalidEvent,
    MappedPayload,
    build_event,
    echoed_ids,
    optional_str,
    require_str,
)
from .config import SendGridSettings
from .errors import RejectionCode, WebhookRejected
from .events import EventType, Provider, SkipReason, WebhookEvent, WebhookResult
from .timestamps import WindowViolation, check_window, datetime_from_epoch

SIGNATURE_HEADER = "x-twilio-email-event-webhook-signature"
TIMESTAMP_HEADER = "x-twilio-email-event-webhook-timestamp"
_TIMESTAMP = re.compile(r"[0-9]{1,12}")

_EVENT_TYPES = {
    "dropped": EventType.DROPPED,
    "delivered": EventType.DELIVERED,
    "deferred": EventType.DEFERRED,
    "open": EventType.OPENED,
    "click": EventType.CLICKED,
    "spamreport": EventType.COMPLAINED,
    "unsubscribe": EventType.UNSUBSCRIBED,
    "group_unsubscribe": EventType.UNSUBSCRIBED,
}
# `group_resubscribe` is consent data; the consent service may read it from the stored receipt.
_IGNORED_EVENTS = frozenset({"processed", "group_resubscribe"})


def _reject(code: RejectionCode, reason: str) -> WebhookRejected:
    return WebhookRejected(401, reason, code=code)


def sendgrid_signature_matches(
    public_key: EllipticCurvePublicKey, *, timestamp: str, body: bytes, signature: str
) -> bool:
    """Return whether `signature` (base64 DER) signs `timestamp || body` under `public_key`."""
    try:
        der = base64.b64decode(signature, validate=True)
        public_key.verify(der, timestamp.encode("ascii") + body, ECDSA(SHA256()))
    except (binascii.Error, InvalidSignature, ValueError):
        return False
    return True


def verify_sendgrid_request(
    headers: Mapping[str, str], body: bytes, settings: SendGridSettings, *, now: datetime
) -> None:
    """Raise `WebhookRejected` (401) unless the request is signed by a configured key and fresh."""
    lowered = lower_headers(headers)
    signature = lowered.get(SIGNATURE_HEADER, "").strip()
    timestamp = lowered.get(TIMESTAMP_HEADER, "").strip()
    if not signature or not timestamp:
        raise _reject(RejectionCode.MISSING_SIGNATURE, "SendGrid signature or timestamp missing")
    if not _TIMESTAMP.fullmatch(timestamp):
        raise _reject(RejectionCode.INVALID_TIMESTAMP, f"timestamp {timestamp[:20]!r} invalid")

    try:
        base64.b64decode(signature, validate=True)
    except binascii.Error:
        raise _reject(RejectionCode.MALFORMED_SIGNATURE, "signature is not base64") from None

    if not any(
        sendgrid_signature_matches(key, timestamp=timestamp, body=body, signature=signature)
        for key in settings.public_keys
    ):
        raise _reject(RejectionCode.BAD_SIGNATURE, "signature matches no SendGrid key")

    violation = check_window(
        datetime_from_epoch(timestamp),
        now=now,
        max_age_s=settings.max_age_s,
        max_future_s=settings.max_future_s,
    )
    if violation is WindowViolation.STALE:
        raise _reject(RejectionCode.STALE_TIMESTAMP, f"timestamp {timestamp} is too old")
    if violation is WindowViolation.FUTURE:
        raise _reject(RejectionCode.FUTURE_TIMESTAMP, f"timestamp {timestamp} is in the future")


def sendgrid_event_id(event: dict[str, Any]) -> str:
    """Return `sg_event_id`, or a hash of the whole event for old events that lack one."""
    event_id = event.get("sg_event_id")
    if isinstance(event_id, str) and event_id:
        return event_id
    canonical = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _event_type(event: dict[str, Any], kind: str) -> EventType:
    if kind == "bounce":
        # SendGrid describes a block as the receiver refusing temporarily; "bounce" is permanent.
        blocked = event.get("type") == "blocked"
        return EventType.BOUNCED_SOFT if blocked else EventType.BOUNCED_HARD
    return _EVENT_TYPES[kind]


def _map_event(event: dict[str, Any], kind: str) -> WebhookEvent:
    try:
        occurred_at = datetime_from_epoch(event.get("timestamp"))
    except ValueError as exc:
        raise InvalidEvent(f"timestamp: {exc}") from exc

    return build_event(
        provider=Provider.SENDGRID,
        provider_event_id=sendgrid_event_id(event),
        event_type=_event_type(event, kind),
        email=require_str(event, "email"),
        message_id=optional_str(event, "sg_message_id"),
        occurred_at=occurred_at,
        raw=event,
        url=optional_str(event, "url") if kind == "click" else None,
        smtp_status=optional_str(event, "status"),
        diagnostic=optional_str(event, "reason") or optional_str(event, "response"),
        machine_open=event.get("sg_machine_open"),
        # Custom args come back as top-level keys of each event.
        echoed=echoed_ids(event),
    )


def map_sendgrid_events(body: bytes) -> MappedPayload:
    """Map every element of a SendGrid batch; an element that cannot be mapped is skipped."""
    mapped = MappedPayload()
    try:
        batch = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        mapped.skip(None, None, SkipReason.INVALID, "body is not JSON")
        return mapped
    if not isinstance(batch, list):
        mapped.skip(None, None, SkipReason.INVALID, "body is not a JSON array of events")
        return mapped

    for index, event in enumerate(batch):
        kind = event.get("event") if isinstance(event, dict) else None
        if not isinstance(event, dict) or not isinstance(kind, str):
            mapped.skip(index, None, SkipReason.INVALID, "element is not an event object")
        elif kind in _IGNORED_EVENTS:
            mapped.skip(index, kind, SkipReason.IGNORED, f"SendGrid {kind} events are not mapped")
        elif kind != "bounce" and kind not in _EVENT_TYPES:
            mapped.skip(index, kind, SkipReason.UNKNOWN, f"unknown SendGrid event {kind!r}")
        else:
            _append_mapped(mapped, index, kind, event)
    return mapped


def _append_mapped(mapped: MappedPayload, index: int, kind: str, event: dict[str, Any]) -> None:
    try:
        mapped.events.append(_map_event(event, kind))
    except InvalidEvent as exc:
        mapped.skip(index, kind, SkipReason.INVALID, str(exc))


def verify_and_map_sendgrid(
    headers: Mapping[str, str], body: bytes, settings: SendGridSettings, *, now: datetime
) -> WebhookResult:
    verify_sendgrid_request(headers, body, settings, now=now)
    mapped = map_sendgrid_events(body)
    return WebhookResult(provider=Provider.SENDGRID, events=mapped.events, skipped=mapped.skipped)
