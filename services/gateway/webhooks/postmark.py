"""Postmark webhooks: HTTP Basic credentials (Postmark signs nothing) and event mapping."""

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from typing import Any

from ._http import lower_headers
from ._mapping import InvalidEvent, MappedPayload, build_event, echoed_ids, require_str
from .config import PostmarkSettings
from .errors import RejectionCode, WebhookRejected
from .events import EventType, Provider, SkipReason, WebhookEvent, WebhookResult
from .timestamps import parse_iso_datetime

_CHALLENGE = {"WWW-Authenticate": 'Basic realm="postmark"'}
_STATUS_IN_DETAILS = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")

# RecordType: (recipient field, timestamp field)
_RECORD_FIELDS = {
    "Delivery": ("Recipient", "DeliveredAt"),
    "Bounce": ("Email", "BouncedAt"),
    "SpamComplaint": ("Email", "BouncedAt"),
    "Open": ("Recipient", "ReceivedAt"),
    "Click": ("Recipient", "ReceivedAt"),
    "SubscriptionChange": ("Recipient", "ChangedAt"),
}
_RECORD_TYPES = {
    "Delivery": EventType.DELIVERED,
    "SpamComplaint": EventType.COMPLAINED,
    "Open": EventType.OPENED,
    "Click": EventType.CLICKED,
}
_BOUNCE_TYPES = {
    "HardBounce": EventType.BOUNCED_HARD,
    "BadEmailAddress": EventType.BOUNCED_HARD,
    "SpamComplaint": EventType.COMPLAINED,
    "Unsubscribe": EventType.UNSUBSCRIBED,
    "ManuallyDeactivated": EventType.DROPPED,
    "Unconfirmed": EventType.DROPPED,
    "SMTPApiError": EventType.DROPPED,
    "TemplateRenderingFailed": EventType.DROPPED,
}
# Bounce records that are not delivery failures of our message.
_IGNORED_BOUNCE_TYPES = frozenset(
    {
        "AutoResponder",
        "AddressChange",
        "Subscribe",
        "ChallengeVerification",
        "OpenRelayTest",
        "InboundError",
    }
)


def _reject(code: RejectionCode, reason: str) -> WebhookRejected:
    return WebhookRejected(401, reason, code=code, headers=_CHALLENGE)


def _equal(received: str, expected: str) -> bool:
    return hmac.compare_digest(received.encode("utf-8"), expected.encode("utf-8"))


def _basic_credentials(authorization: str) -> tuple[str, str]:
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        raise _reject(RejectionCode.BAD_CREDENTIALS, "Authorization is not Basic")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise _reject(RejectionCode.BAD_CREDENTIALS, "Basic credentials are not base64") from None
    username, separator, password = decoded.partition(":")
    if not separator:
        raise _reject(RejectionCode.BAD_CREDENTIALS, "Basic credentials lack a colon")
    return username, password


def verify_postmark_request(headers: Mapping[str, str], settings: PostmarkSettings) -> None:
    """Raise `WebhookRejected` (401 with a Basic challenge) unless the credentials match."""
    lowered = lower_headers(headers)
    authorization = lowered.get("authorization")
    if not authorization:
        raise _reject(RejectionCode.MISSING_CREDENTIALS, "Authorization header missing")

    username, password = _basic_credentials(authorization)
    # Bitwise `&` and `|` so every pair is compared in full, whichever part differs.
    matched = False
    for pair in settings.credentials:
        same_user = _equal(username, pair.username)
        same_password = _equal(password, pair.password.get_secret_value())
        matched |= same_user & same_password
    if not matched:
        raise _reject(RejectionCode.BAD_CREDENTIALS, "Basic credentials do not match")

    if settings.shared_header_values:
        header_value = lowered.get(settings.shared_header_name.lower(), "")
        accepted = settings.shared_header_values
        if not any(_equal(header_value, value.get_secret_value()) for value in accepted):
            raise _reject(
                RejectionCode.BAD_CREDENTIALS, f"{settings.shared_header_name} missing or wrong"
            )


def _record_event_type(record: dict[str, Any], record_type: str) -> EventType | None:
    if record_type == "Bounce":
        bounce_type = require_str(record, "Type")
        if bounce_type in _IGNORED_BOUNCE_TYPES:
            return None
        # SoftBounce, Transient, DnsError, Blocked, DMARCPolicy, Unknown and new values.
        return _BOUNCE_TYPES.get(bounce_type, EventType.BOUNCED_SOFT)
    if record_type == "SubscriptionChange":
        return _subscription_change_type(record)
    return _RECORD_TYPES[record_type]


def _subscription_change_type(record: dict[str, Any]) -> EventType | None:
    suppress = record.get("SuppressSending")
    if not isinstance(suppress, bool):
        raise InvalidEvent("SuppressSending is missing or not a boolean")
    if not suppress:
        # A reactivation; the consent service may read it from the stored receipt.
        return None

    reason = record.get("SuppressionReason")
    if reason == "HardBounce":
        return EventType.BOUNCED_HARD
    if reason == "SpamComplaint":
        return EventType.COMPLAINED
    # A manual suppression by the customer or an admin is not the recipient's choice.
    if reason == "ManualSuppression" and record.get("Origin") == "Recipient":
        return EventType.UNSUBSCRIBED
    return None


def postmark_event_id(
    record: dict[str, Any], record_type: str, email: str, timestamp_raw: str
) -> str:
    """Return `RecordType:ID` when the record has an ID, else a hash of its identifying fields.

    The hash input is `RecordType|MessageID|recipient|timestamp|extra`. The recipient is stripped
    and lower-cased, and the timestamp is kept exactly as received. `extra` is the link for clicks
    and `suppress:reason` for subscription changes. A retry that resends the same payload gets the
    same key.
    """
    record_id = record.get("ID")
    has_id = (
        isinstance(record_id, int | str) and not isinstance(record_id, bool) and record_id != ""
    )
    if record_type in ("Bounce", "SpamComplaint") and has_id:
        return f"{record_type}:{record_id}"

    extra = ""
    link = record.get("OriginalLink")
    if record_type == "Click":
        extra = link if isinstance(link, str) else ""
    elif record_type == "SubscriptionChange":
        extra = (
            f"{str(record.get('SuppressSending')).lower()}:{record.get('SuppressionReason') or ''}"
        )
    parts = [
        record_type,
        record.get("MessageID") or "",
        email.strip().lower(),
        timestamp_raw,
        extra,
    ]
    return "sha256:" + hashlib.sha256("|".join(parts).encode("utf-8")).hexdigest()


def _map_record(record: dict[str, Any], record_type: str, event_type: EventType) -> WebhookEvent:
    email_field, time_field = _RECORD_FIELDS[record_type]
    email = require_str(record, email_field)
    timestamp_raw = require_str(record, time_field)
    try:
        occurred_at = parse_iso_datetime(timestamp_raw)
    except ValueError as exc:
        raise InvalidEvent(f"{time_field}: {exc}") from exc

    details = record.get("Details") if record_type == "Bounce" else None
    details = details if isinstance(details, str) and details else None
    status = _STATUS_IN_DETAILS.search(details) if details else None
    return build_event(
        provider=Provider.POSTMARK,
        provider_event_id=postmark_event_id(record, record_type, email, timestamp_raw),
        event_type=event_type,
        email=email,
        message_id=record.get("MessageID"),
        occurred_at=occurred_at,
        raw=record,
        url=record.get("OriginalLink") if record_type == "Click" else None,
        smtp_status=status.group(1) if status else None,
        diagnostic=details,
        echoed=echoed_ids(record.get("Metadata")),
    )


def map_postmark_event(body: bytes) -> MappedPayload:
    """Map the single record of a Postmark webhook."""
    mapped = MappedPayload()
    try:
        record = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        record = None
    if not isinstance(record, dict):
        mapped.skip(None, None, SkipReason.INVALID, "body is not a JSON object")
        return mapped

    record_type = record.get("RecordType")
    message_id = record.get("MessageID")
    if not isinstance(record_type, str) or not (message_id is None or isinstance(message_id, str)):
        mapped.skip(None, None, SkipReason.INVALID, "RecordType or MessageID has the wrong type")
    elif record_type not in _RECORD_FIELDS:
        mapped.skip(None, record_type, SkipReason.UNKNOWN, f"unknown RecordType {record_type!r}")
    else:
        _append_mapped(mapped, record, record_type)
    return mapped


def _append_mapped(mapped: MappedPayload, record: dict[str, Any], record_type: str) -> None:
    try:
        event_type = _record_event_type(record, record_type)
        if event_type is None:
            mapped.skip(None, _kind(record, record_type), SkipReason.IGNORED, "not a mapped change")
            return
        mapped.events.append(_map_record(record, record_type, event_type))
    except InvalidEvent as exc:
        mapped.skip(None, _kind(record, record_type), SkipReason.INVALID, str(exc))


def _kind(record: dict[str, Any], record_type: str) -> str:
    sub_type = record.get("Type") if record_type == "Bounce" else None
    return f"{record_type}/{sub_type}" if isinstance(sub_type, str) else record_type


def verify_and_map_postmark(
    headers: Mapping[str, str], body: bytes, settings: PostmarkSettings
) -> WebhookResult:
    verify_postmark_request(headers, settings)
    mapped = map_postmark_event(body)
    return WebhookResult(provider=Provider.POSTMARK, events=mapped.events, skipped=mapped.skipped)
