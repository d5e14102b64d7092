"""Mailgun webhooks: HMAC-SHA256 of timestamp and token, token binding, event mapping.

The signature covers `timestamp + token` only, not the event data, so a captured signature block
could be glued onto other data. Each token is therefore bound to a SHA-256 hash of the first
`event-data` it arrived with. The same token with the same event data is a retry (accepted,
de-duplicated downstream). With any other event data, even under the same event id and time, it
is a replay (406, which also stops Mailgun from retrying).
"""

import hashlib
import hmac
import json
import re
from datetime import datetime
from typing import Any

from ._mapping import (
    InvalidEvent,
    MappedPayload,
    build_event,
    echoed_ids,
    optional_str,
    require_dict,
    require_str,
)
from .config import MailgunSettings
from .errors import RejectionCode, WebhookRejected
from .events import EventType, Provider, SkipReason, WebhookEvent, WebhookResult
from .replay import ReplayCache
from .timestamps import WindowViolation, check_window, datetime_from_epoch

_TIMESTAMP = re.compile(r"[0-9]{1,12}")

_EVENT_TYPES = {
    "delivered": EventType.DELIVERED,
    "opened": EventType.OPENED,
    "clicked": EventType.CLICKED,
    "unsubscribed": EventType.UNSUBSCRIBED,
    "complained": EventType.COMPLAINED,
}
_IGNORED_EVENTS = frozenset(
    {
        "accepted",
        "rejected",
        "stored",
        "list_member_uploaded",
        "list_member_upload_error",
        "list_uploaded",
    }
)


def _reject(code: RejectionCode, reason: str) -> WebhookRejected:
    # 401 and not 406: Mailgun keeps retrying a 401 for hours, which heals a mis-set key.
    return WebhookRejected(401, reason, code=code)


def mailgun_signature_matches(
    signing_key: str, *, timestamp: str, token: str, signature: str
) -> bool:
    """Return whether `signature` is hex HMAC-SHA256 of `timestamp + token` under the key."""
    expected = hmac.new(
        signing_key.encode("utf-8"), (timestamp + token).encode("utf-8"), hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8"))


def _parse_payload(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise _reject(RejectionCode.MISSING_SIGNATURE, "body is not JSON") from None
    if not isinstance(payload, dict):
        raise _reject(RejectionCode.MISSING_SIGNATURE, "body is not a JSON object")
    return payload


def _signature_fields(payload: dict[str, Any], settings: MailgunSettings) -> tuple[str, str, str]:
    field = "parent-signature" if settings.verify_parent_signature else "signature"
    block = payload.get("signature")
    if not isinstance(block, dict):
        block = {}

    values = [block.get(name) for name in ("timestamp", "token", field)]
    if not all(isinstance(value, str) and value for value in values):
        raise _reject(
            RejectionCode.MISSING_SIGNATURE, f"signature.timestamp, .token or .{field} missing"
        )
    timestamp, token, signature = values
    return timestamp, token, signature


def verify_mailgun_signature(
    payload: dict[str, Any], settings: MailgunSettings, *, now: datetime
) -> str:
    """Check the signature block and its freshness; return the token. Raise 401 on failure."""
    timestamp, token, signature = _signature_fields(payload, settings)
    if not _TIMESTAMP.fullmatch(timestamp):
        raise _reject(RejectionCode.INVALID_TIMESTAMP, f"timestamp {timestamp[:20]!r} invalid")

    if not any(
        mailgun_signature_matches(
            key.get_secret_value(), timestamp=timestamp, token=token, signature=signature
        )
        for key in settings.signing_keys
    ):
        raise _reject(RejectionCode.BAD_SIGNATURE, "signature matches no Mailgun signing key")

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
    return token


def _event_binding(payload: dict[str, Any]) -> str:
    """Return the value a token is bound to: a SHA-256 hash of the canonical `event-data` JSON.

    The hash covers every field, so a forged event that copies the id and time of the signed one
    but changes its kind or recipient does not match. Sorted keys make the hash independent of
    key order. ASCII escapes keep lone surrogates encodable.
    """
    event_data = payload.get("event-data")
    event_id = event_data.get("id") if isinstance(event_data, dict) else None
    timestamp = event_data.get("timestamp") if isinstance(event_data, dict) else None
    valid_timestamp = isinstance(timestamp, int | float) and not isinstance(timestamp, bool)
    if not isinstance(event_id, str) or not event_id or not valid_timestamp:
        raise WebhookRejected(
            406,
            "event-data.id or event-data.timestamp missing",
            code=RejectionCode.INVALID_EVENT_DATA,
        )

    canonical = json.dumps(event_data, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode("ascii")).hexdigest()


def _legacy_binding(payload: dict[str, Any]) -> str:
    """Return the binding that earlier versions stored: the JSON array `[id, timestamp]`."""
    event_data = payload["event-data"]
    return json.dumps([event_data["id"], event_data["timestamp"]])


async def bind_token(
    token: str, payload: dict[str, Any], cache: ReplayCache, *, ttl_s: int
) -> bool:
    """Bind `token` to the payload's event data and return whether it was already bound to it.

    Raise 406 when the token was first seen with other event data.
    """
    binding = _event_binding(payload)
    token_hash = hashlib.sha256(token.encode("utf-8")).hexdigest()
    previous = await cache.set_if_absent(f"mailgun:token:{token_hash}", binding, ttl_s=ttl_s)
    if previous is None:
        return False

    # NOTE: earlier versions stored `[id, timestamp]` instead of the hash, and a retry across the
    # upgrade must still match. Until those tokens expire, `token_ttl_s` after the upgrade, they
    # also accept forged data that copies the id and time. Then this comparison can go.
    same_event = previous == binding or previous == _legacy_binding(payload)
    if not same_event:
        raise WebhookRejected(
            406,
            "token was already used with other event data",
            code=RejectionCode.REPLAYED_TOKEN,
        )
    return True


def _message_id(event_data: dict[str, Any]) -> str | None:
    message = event_data.get("message")
    headers = message.get("headers") if isinstance(message, dict) else None
    if not isinstance(headers, dict):
        return None
    message_id = optional_str(headers, "message-id", "message.headers.message-id")
    return message_id.strip().removeprefix("<").removesuffix(">") if message_id else None


def _failed_type(event_data: dict[str, Any]) -> EventType:
    severity = event_data.get("severity")
    reason = event_data.get("reason")
    if severity == "temporary":
        return EventType.DEFERRED
    if severity != "permanent":
        raise InvalidEvent(f"severity {severity!r} is neither permanent nor temporary")
    if isinstance(reason, str) and reason.startswith("suppress-"):
        return EventType.DROPPED
    # NOTE: Mailgun's docs do not show where "retry period expired" appears in a payload, so
    # reason "old" is a guess. A message not delivered in time proves nothing about the address.
    if reason == "old":
        return EventType.BOUNCED_SOFT
    return EventType.BOUNCED_HARD


def _map_event(event_data: dict[str, Any], kind: str) -> WebhookEvent:
    event_type = _failed_type(event_data) if kind == "failed" else _EVENT_TYPES[kind]
    try:
        occurred_at = datetime_from_epoch(event_data.get("timestamp"))
    except ValueError as exc:
        raise InvalidEvent(f"event-data.timestamp: {exc}") from exc

    status = event_data.get("delivery-status")
    status = status if isinstance(status, dict) else {}
    event_id = require_str(event_data, "id", "event-data.id")
    return build_event(
        provider=Provider.MAILGUN,
        # An id is unique only within one day, so the UTC date completes the key.
        provider_event_id=f"{event_id}:{occurred_at:%Y-%m-%d}",
        event_type=event_type,
        email=require_str(event_data, "recipient", "event-data.recipient"),
        message_id=_message_id(event_data),
        occurred_at=occurred_at,
        raw=event_data,
        url=optional_str(event_data, "url", "event-data.url") if kind == "clicked" else None,
        smtp_status=optional_str(status, "enhanced-code", "delivery-status.enhanced-code"),
        diagnostic=optional_str(status, "message") or optional_str(status, "description"),
        echoed=echoed_ids(event_data.get("user-variables")),
    )


def map_mailgun_event(payload: dict[str, Any]) -> MappedPayload:
    """Map the single event of a Mailgun webhook payload."""
    mapped = MappedPayload()
    try:
        event_data = require_dict(payload.get("event-data"), "event-data")
    except InvalidEvent as exc:
        mapped.skip(None, None, SkipReason.INVALID, str(exc))
        return mapped

    kind = event_data.get("event")
    if not isinstance(kind, str):
        mapped.skip(None, None, SkipReason.INVALID, "event-data.event is missing")
    elif kind in _IGNORED_EVENTS:
        mapped.skip(None, kind, SkipReason.IGNORED, f"Mailgun {kind} events are not mapped")
    elif kind != "failed" and kind not in _EVENT_TYPES:
        mapped.skip(None, kind, SkipReason.UNKNOWN, f"unknown Mailgun event {kind!r}")
    else:
        try:
            mapped.events.append(_map_event(event_data, kind))
        except InvalidEvent as exc:
            mapped.skip(None, kind, SkipReason.INVALID, str(exc))
    return mapped


async def verify_and_map_mailgun(
    body: bytes,
    settings: MailgunSettings,
    *,
    replay_cache: ReplayCache,
    now: datetime,
) -> WebhookResult:
    payload = _parse_payload(body)
    token = verify_mailgun_signature(payload, settings, now=now)
    token_reused = await bind_token(
        token, payload, replay_cache, ttl_s=settings.token_binding_ttl_s
    )

    mapped = map_mailgun_event(payload)
    return WebhookResult(
        provider=Provider.MAILGUN,
        events=mapped.events,
        skipped=mapped.skipped,
        token_reused=token_reused,
    )
