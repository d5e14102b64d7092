"""Amazon SES events through Amazon SNS: message signature (versions 1 and 2) and mapping.

SNS signs a canonical string built from some envelope fields with RSA PKCS#1 v1.5, SHA-1 for
SignatureVersion 1 and SHA-256 for 2. The certificate is downloaded from `SigningCertURL`, which the
signature does not cover, so that URL is checked strictly before any request.
"""

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.hashes import SHA1, SHA256, HashAlgorithm

from ._http import lower_headers
from ._mapping import (
    InvalidEvent,
    MappedPayload,
    build_event,
    echoed_ids,
    optional_str,
    require_dict,
    require_str,
)
from .certificates import CertificateFetcher
from .config import SesSettings
from .errors import RejectionCode, WebhookRejected
from .events import EventType, Provider, SkipReason, WebhookResult
from .sns_urls import validate_signing_cert_url, validate_subscribe_url
from .timestamps import WindowViolation, check_window, parse_iso_datetime

_CONFIRMATION_KEYS = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)
# Byte-sorted field names whose values SNS signs, per message type.
_SIGNED_KEYS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": _CONFIRMATION_KEYS,
    "UnsubscribeConfirmation": _CONFIRMATION_KEYS,
}
_REQUIRED_KEYS = (
    "Type",
    "MessageId",
    "TopicArn",
    "Message",
    "Timestamp",
    "SignatureVersion",
    "Signature",
    "SigningCertURL",
)
_HASHES: dict[str, type[HashAlgorithm]] = {"1": SHA1, "2": SHA256}
_HEADER_FIELDS = {
    "x-amz-sns-message-type": "Type",
    "x-amz-sns-message-id": "MessageId",
    "x-amz-sns-topic-arn": "TopicArn",
}


def _reject(code: RejectionCode, reason: str) -> WebhookRejected:
    return WebhookRejected(403, reason, code=code)


def sns_string_to_sign(envelope: Mapping[str, str | None]) -> bytes:
    """Build the canonical `key\\nvalue\\n` string SNS signs, from the JSON-decoded values.

    An absent or null `Subject` is left out, as the AWS SDK for PHP's validator does.
    """
    keys = _SIGNED_KEYS[str(envelope["Type"])]
    present = [key for key in keys if envelope.get(key) is not None]
    return "".join(f"{key}\n{envelope[key]}\n" for key in present).encode("utf-8")


def sns_signature_matches(envelope: Mapping[str, str], certificate: x509.Certificate) -> bool:
    """Return whether the envelope's `Signature` verifies under the certificate's RSA key."""
    algorithm = _HASHES.get(envelope["SignatureVersion"])
    public_key = certificate.public_key()
    if algorithm is None or not isinstance(public_key, RSAPublicKey):
        return False
    try:
        signature = base64.b64decode(envelope["Signature"], validate=True)
        public_key.verify(signature, sns_string_to_sign(envelope), PKCS1v15(), algorithm())
    except (binascii.Error, InvalidSignature, ValueError):
        return False
    return True


def _parse_envelope(body: bytes) -> dict[str, str]:
    # SNS posts JSON as text/plain, so the content type is ignored.
    try:
        envelope = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise _reject(RejectionCode.MALFORMED_ENVELOPE, "body is not JSON") from None
    if not isinstance(envelope, dict):
        raise _reject(RejectionCode.MALFORMED_ENVELOPE, "body is not a JSON object")

    message_type = envelope.get("Type")
    if message_type not in _SIGNED_KEYS:
        raise _reject(RejectionCode.MALFORMED_ENVELOPE, f"unknown SNS Type {message_type!r}")
    required = set(_REQUIRED_KEYS) | set(_SIGNED_KEYS[message_type]) - {"Subject"}
    missing = sorted(key for key in required if not isinstance(envelope.get(key), str))
    if missing:
        raise _reject(RejectionCode.MALFORMED_ENVELOPE, f"fields missing or not strings: {missing}")
    if envelope.get("Subject") is not None and not isinstance(envelope["Subject"], str):
        raise _reject(RejectionCode.MALFORMED_ENVELOPE, "Subject is not a string")
    return envelope


def _check_headers(headers: Mapping[str, str], envelope: Mapping[str, str]) -> None:
    for header, key in _HEADER_FIELDS.items():
        value = headers.get(header)
        if value is not None and value.strip() != envelope[key]:
            raise _reject(RejectionCode.HEADER_MISMATCH, f"header {header} disagrees with {key}")


def _check_timestamp(envelope: Mapping[str, str], settings: SesSettings, now: datetime) -> None:
    try:
        published_at = parse_iso_datetime(envelope["Timestamp"])
    except ValueError as exc:
        raise _reject(RejectionCode.INVALID_TIMESTAMP, f"Timestamp: {exc}") from exc

    violation = check_window(
        published_at, now=now, max_age_s=settings.max_age_s, max_future_s=settings.max_future_s
    )
    if violation is WindowViolation.STALE:
        raise _reject(
            RejectionCode.STALE_TIMESTAMP, f"Timestamp {envelope['Timestamp']} is too old"
        )
    if violation is WindowViolation.FUTURE:
        raise _reject(RejectionCode.FUTURE_TIMESTAMP, f"Timestamp {envelope['Timestamp']} is ahead")


def _check_validity(certificate: x509.Certificate, now: datetime) -> None:
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise _reject(RejectionCode.INVALID_CERTIFICATE, "signing certificate is not valid now")


async def verify_sns_message(
    headers: Mapping[str, str],
    body: bytes,
    settings: SesSettings,
    *,
    cert_fetcher: CertificateFetcher,
    now: datetime,
) -> dict[str, str]:
    """Verify an SNS message and return its envelope; raise `WebhookRejected` (403) on failure.

    Every check that needs no network runs first, so a forged or foreign message never makes
    us fetch anything.
    """
    lowered = lower_headers(headers)
    if lowered.get("x-amz-sns-rawdelivery", "").strip().lower() == "true":
        raise _reject(
            RejectionCode.RAW_MESSAGE_DELIVERY, "raw message delivery carries no signature"
        )

    envelope = _parse_envelope(body)
    _check_headers(lowered, envelope)
    if envelope["TopicArn"] not in settings.allowed_topic_arns:
        raise _reject(RejectionCode.TOPIC_NOT_ALLOWED, f"topic {envelope['TopicArn']} not allowed")
    if envelope["SignatureVersion"] not in _HASHES:
        raise _reject(
            RejectionCode.UNSUPPORTED_SIGNATURE_VERSION,
            f"SignatureVersion {envelope['SignatureVersion'][:10]!r} is not 1 or 2",
        )
    validate_signing_cert_url(envelope["SigningCertURL"])
    _check_timestamp(envelope, settings, now)

    certificate = await cert_fetcher.fetch(envelope["SigningCertURL"])
    _check_validity(certificate, now)
    if not sns_signature_matches(envelope, certificate):
        raise _reject(RejectionCode.BAD_SIGNATURE, "SNS signature does not verify")
    return envelope


@dataclass
class _SesFacts:
    """Facts of one SES notification, before they are split per recipient."""

    event_type: EventType | None
    recipients: list[tuple[str, dict[str, Any] | None]] = field(default_factory=list)
    timestamp: object = None
    url: str | None = None
    diagnostic: str | None = None


def _recipient_objects(
    container: dict[str, Any], key: str, name: str
) -> list[tuple[str, dict[str, Any] | None]]:
    items = container.get(key)
    if not isinstance(items, list) or not items:
        raise InvalidEvent(f"{name}.{key} is missing or empty")
    recipients = []
    for item in items:
        entry = require_dict(item, f"{name}.{key}[]")
        recipients.append(
            (require_str(entry, "emailAddress", f"{name}.{key}[].emailAddress"), entry)
        )
    return recipients


def _destination(mail: dict[str, Any]) -> list[tuple[str, dict[str, Any] | None]]:
    destination = mail.get("destination")
    if not isinstance(destination, list) or not destination:
        raise InvalidEvent("mail.destination is missing or empty")
    if not all(isinstance(address, str) for address in destination):
        raise InvalidEvent("mail.destination contains a non-string")
    return [(address, None) for address in destination]


def _bounce_facts(message: dict[str, Any], mail: dict[str, Any]) -> _SesFacts:
    bounce = require_dict(message.get("bounce"), "bounce")
    bounce_type = bounce.get("bounceType")
    if bounce_type == "Permanent":
        # SES did not even try an address on a suppression list.
        suppressed = bounce.get("bounceSubType") in ("Suppressed", "OnAccountSuppressionList")
        event_type = EventType.DROPPED if suppressed else EventType.BOUNCED_HARD
    else:
        # Transient, Undetermined and any new value: nothing proves the address bad.
        event_type = EventType.BOUNCED_SOFT
    recipients = _recipient_objects(bounce, "bouncedRecipients", "bounce")
    return _SesFacts(event_type, recipients, bounce.get("timestamp"))


def _complaint_facts(message: dict[str, Any], mail: dict[str, Any]) -> _SesFacts:
    complaint = require_dict(message.get("complaint"), "complaint")
    if complaint.get("complaintSubType") == "OnAccountSuppressionList":
        event_type: EventType | None = EventType.DROPPED
    elif complaint.get("complaintFeedbackType") == "not-spam":
        event_type = None
    else:
        event_type = EventType.COMPLAINED
    recipients = _recipient_objects(complaint, "complainedRecipients", "complaint")
    return _SesFacts(event_type, recipients, complaint.get("timestamp"))


def _delivery_facts(message: dict[str, Any], mail: dict[str, Any]) -> _SesFacts:
    delivery = require_dict(message.get("delivery"), "delivery")
    addresses = delivery.get("recipients")
    if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
        raise InvalidEvent("delivery.recipients is missing or not a list of strings")
    return _SesFacts(EventType.DELIVERED, [(a, None) for a in addresses], delivery.get("timestamp"))


def _reject_facts(message: dict[str, Any], mail: dict[str, Any]) -> _SesFacts:
    reject = message.get("reject")
    reason = optional_str(reject, "reason", "reject.reason") if isinstance(reject, dict) else None
    return _SesFacts(
        EventType.DROPPED, _destination(mail), mail.get("timestamp"), diagnostic=reason
    )


def _rendering_failure_facts(message: dict[str, Any], mail: dict[str, Any]) -> _SesFacts:
    failure = message.get("failure")
    error = (
        optional_str(failure, "errorMessage", "failure.errorMessage")
        if isinstance(failure, dict)
        else None
    )
    return _SesFacts(EventType.DROPPED, _destination(mail), mail.get("timestamp"), diagnostic=error)


def _delivery_delay_facts(message: dict[str, Any], mail: dict[str, Any]) -> _SesFacts:
    delay = require_dict(message.get("deliveryDelay"), "deliveryDelay")
    recipients = _recipient_objects(delay, "delayedRecipients", "deliveryDelay")
    return _SesFacts(EventType.DEFERRED, recipients, delay.get("timestamp"))


def _open_facts(message: dict[str, Any], mail: dict[str, Any]) -> _SesFacts:
    # SES does not say which recipient opened; we send one message per recipient.
    opened = require_dict(message.get("open"), "open")
    return _SesFacts(EventType.OPENED, _destination(mail), opened.get("timestamp"))


def _click_facts(message: dict[str, Any], mail: dict[str, Any]) -> _SesFacts:
    click = require_dict(message.get("click"), "click")
    link = optional_str(click, "link", "click.link")
    return _SesFacts(EventType.CLICKED, _destination(mail), click.get("timestamp"), url=link)


def _topic_statuses(preferences: object) -> dict[str, object]:
    statuses = preferences.get("topicSubscriptionStatus") if isinstance(preferences, dict) else None
    if not isinstance(statuses, list):
        return {}
    return {
        item.get("topicName"): item.get("subscriptionStatus")
        for item in statuses
        if isinstance(item, dict)
    }


def _subscription_facts(message: dict[str, Any], mail: dict[str, Any]) -> _SesFacts:
    subscription = require_dict(message.get("subscription"), "subscription")
    new_preferences = subscription.get("newTopicPreferences")
    old = _topic_statuses(subscription.get("oldTopicPreferences"))
    new = _topic_statuses(new_preferences)
    unsubscribe_all = (
        isinstance(new_preferences, dict) and new_preferences.get("unsubscribeAll") is True
    )
    opted_out = any(
        status == "OptOut" and old.get(topic) == "OptIn" for topic, status in new.items()
    )

    event_type = EventType.UNSUBSCRIBED if unsubscribe_all or opted_out else None
    return _SesFacts(event_type, _destination(mail), subscription.get("timestamp"))


_FACTS_BY_KIND = {
    "Bounce": _bounce_facts,
    "Complaint": _complaint_facts,
    "Delivery": _delivery_facts,
    "Reject": _reject_facts,
    "Rendering Failure": _rendering_failure_facts,
    "DeliveryDelay": _delivery_delay_facts,
    "Open": _open_facts,
    "Click": _click_facts,
    "Subscription": _subscription_facts,
}
_IGNORED_KINDS = frozenset({"Send", "Received"})


def map_ses_notification(envelope: Mapping[str, str]) -> MappedPayload:
    """Map the SES event inside an SNS Notification to one event per recipient."""
    mapped = MappedPayload()
    try:
        message = json.loads(envelope["Message"])
    except ValueError:
        message = None
    if not isinstance(message, dict):
        # SES posts a plain-text message when event publishing is set up.
        mapped.skip(None, None, SkipReason.IGNORED, "Message is not a JSON object")
        return mapped

    kind = message.get("eventType") or message.get("notificationType")
    if not isinstance(kind, str):
        mapped.skip(None, None, SkipReason.INVALID, "eventType and notificationType are missing")
    elif kind in _IGNORED_KINDS:
        mapped.skip(None, kind, SkipReason.IGNORED, f"SES {kind} events are not mapped")
    elif kind not in _FACTS_BY_KIND:
        mapped.skip(None, kind, SkipReason.UNKNOWN, f"unknown SES event {kind!r}")
    else:
        _append_mapped(mapped, envelope["MessageId"], message, kind)
    return mapped


def _event_time(value: object, kind: str) -> datetime:
    try:
        return parse_iso_datetime(value)
    except ValueError as exc:
        raise InvalidEvent(f"{kind} timestamp: {exc}") from exc


def _append_mapped(
    mapped: MappedPayload, sns_message_id: str, message: dict[str, Any], kind: str
) -> None:
    try:
        mail = require_dict(message.get("mail"), "mail")
        facts = _FACTS_BY_KIND[kind](message, mail)
        occurred_at = _event_time(facts.timestamp, kind)
        message_id = optional_str(mail, "messageId", "mail.messageId")
    except InvalidEvent as exc:
        mapped.skip(None, kind, SkipReason.INVALID, str(exc))
        return
    if facts.event_type is None:
        mapped.skip(None, kind, SkipReason.IGNORED, f"SES {kind} without a mapped change")
        return

    for index, (email, recipient) in enumerate(facts.recipients):
        details = recipient or {}
        try:
            mapped.events.append(
                build_event(
                    provider=Provider.SES,
                    # One SNS message can cover several recipients; SNS keeps MessageId on retries.
                    provider_event_id=f"{sns_message_id}:{email.strip().lower()}",
                    event_type=facts.event_type,
                    email=email,
                    message_id=message_id,
                    occurred_at=occurred_at,
                    raw=message,
                    url=facts.url,
                    smtp_status=optional_str(details, "status", "recipient status"),
                    diagnostic=optional_str(details, "diagnosticCode") or facts.diagnostic,
                    echoed=echoed_ids(mail.get("tags")),
                )
            )
        except InvalidEvent as exc:
            mapped.skip(index, kind, SkipReason.INVALID, str(exc))


async def verify_and_map_ses(
    headers: Mapping[str, str],
    body: bytes,
    settings: SesSettings,
    *,
    cert_fetcher: CertificateFetcher,
    now: datetime,
) -> WebhookResult:
    envelope = await verify_sns_message(headers, body, settings, cert_fetcher=cert_fetcher, now=now)

    if envelope["Type"] == "SubscriptionConfirmation":
        subscribe_url = validate_subscribe_url(envelope["SubscribeURL"])
        return WebhookResult(
            provider=Provider.SES,
            events=[],
            action="confirm_subscription",
            subscribe_url=subscribe_url,
        )
    if envelope["Type"] == "UnsubscribeConfirmation":
        return WebhookResult(provider=Provider.SES, events=[])

    mapped = map_ses_notification(envelope)
    return WebhookResult(provider=Provider.SES, events=mapped.events, skipped=mapped.skipped)


async def confirm_sns_subscription(
    client: httpx.AsyncClient, subscribe_url: str, *, timeout_s: float = 10.0
) -> None:
    """Confirm an SNS subscription with one GET of its validated `SubscribeURL`.

    Meant for a background job. Raise `WebhookRejected` for a URL off the SNS hosts and
    `httpx.HTTPError` when the request fails or SNS returns an error status.
    """
    validate_subscribe_url(subscribe_url)
    response = await client.get(subscribe_url, timeout=timeout_s, follow_redirects=False)
    response.raise_for_status()
