"""Turning a common webhook event into the timeline event the contacts service stores.

The timeline event's `properties` carry what the other services need. Our Message-ID finds the send
and lets contacts recognise a stale bounce. The provider's ids identify the event. `bounce_class` is
the failure class of bounces, deferrals and complaints, and `machine` or `bot` is the verdict on an
open or click.

The failure class can overrule the provider's label: a "bounce" whose text is an out-of-office
reply becomes `email_auto_replied`, which changes no consent, and a bounce classified as a spam
complaint becomes `email_complained`.
"""

import hashlib
from datetime import datetime
from typing import Any

from services.gateway.webhooks import EventType, FailureClass, Provider, WebhookEvent, classify_event
from services.sequencer.engagement.classifier import TrackingHit, Verdict, classify_hits

TIMELINE_TYPES: dict[EventType, str] = {
    EventType.DELIVERED: "email_delivered",
    EventType.OPENED: "email_opened",
    EventType.CLICKED: "email_clicked",
    EventType.BOUNCED_HARD: "email_bounced",
    EventType.BOUNCED_SOFT: "email_bounced",
    EventType.DEFERRED: "email_deferred",
    EventType.DROPPED: "email_dropped",
    EventType.COMPLAINED: "email_complained",
    EventType.UNSUBSCRIBED: "unsubscribed",
}
# The contacts service keeps message ids of up to 200 characters.
MAX_MESSAGE_ID_LENGTH = 200
_BOUNCE_TYPES = {EventType.BOUNCED_HARD: "hard", EventType.BOUNCED_SOFT: "soft"}


def timeline_event_id(provider: str, provider_event_id: str) -> str:
    """Return the fixed timeline event id of one provider event (at most 52 characters)."""
    digest = hashlib.sha256(f"{provider}\x00{provider_event_id}".encode()).hexdigest()
    return f"wh_{provider}_{digest[:40]}"


def timeline_event(event: WebhookEvent, received_at: datetime) -> dict[str, Any]:
    """Return the body of the contacts service's `POST /events` for one provider event.

    An event cannot have happened after it arrived, so the time of a provider clock running ahead
    becomes the arrival time. The provider's own time stays in `provider_occurred_at`.
    """
    occurred_at = min(event.occurred_at, received_at)
    properties: dict[str, Any] = {
        "provider": event.provider.value,
        "provider_event_id": event.provider_event_id,
        "provider_message_id": event.message_id,
        "message_id": our_message_id(event),
        "send_id": event.send_id,
        "provider_occurred_at": event.occurred_at.isoformat() if occurred_at != event.occurred_at else None,
    }
    failure_class = classify_event(event)
    if event.type in (EventType.OPENED, EventType.CLICKED):
        properties.update(_engagement_properties(event))
    elif event.type is EventType.UNSUBSCRIBED:
        properties.update(source="provider", provider_group=_unsubscribe_group(event))
    else:
        properties.update(smtp_status=event.smtp_status, diagnostic=event.diagnostic, bounce_type=_BOUNCE_TYPES.get(event.type))
        properties["bounce_class"] = failure_class.value if failure_class is not None else None

    return {
        "id": timeline_event_id(event.provider.value, event.provider_event_id),
        "email": event.email,
        "type": timeline_type(event, failure_class),
        "occurred_at": occurred_at.isoformat(),
        "properties": {name: value for name, value in properties.items() if value is not None},
    }


def timeline_type(event: WebhookEvent, failure_class: FailureClass | None) -> str:
    """Return the timeline event type, letting the failure class overrule a bounce label."""
    if event.type in _BOUNCE_TYPES:
        if failure_class is FailureClass.AUTO_REPLY:
            return "email_auto_replied"
        if failure_class is FailureClass.COMPLAINT:
            return "email_complained"
    return TIMELINE_TYPES[event.type]


def _unsubscribe_group(event: WebhookEvent) -> str | None:
    # SendGrid reports the unsubscribe group; the platform has no mapping to its topics, so the
    # contacts service applies the unsubscribe to all mail.
    group = event.raw.get("asm_group_id") if event.provider is Provider.SENDGRID else None
    return str(group) if isinstance(group, int | str) and not isinstance(group, bool) else None


def _engagement_properties(event: WebhookEvent) -> dict[str, Any]:
    user_agent, ip = client_of(event)
    hit = TrackingHit(
        kind="open" if event.type is EventType.OPENED else "click",
        occurred_at=event.occurred_at,
        user_agent=user_agent,
        ip=ip,
        url=event.url,
        provider_machine_open=bool(event.machine_open),
    )
    # The delivery time is unknown here, so the timing rules of the classifier stay off.
    verdict = classify_hits([hit], delivered_at=None)[0]
    properties: dict[str, Any] = {"user_agent": user_agent, "ip": ip}
    if event.type is EventType.OPENED:
        properties["machine"] = verdict.verdict is Verdict.MACHINE
        properties["provider_machine_open"] = event.machine_open
    else:
        properties["url"] = event.url
        properties["bot"] = verdict.verdict is Verdict.BOT
    properties["classification_reasons"] = list(verdict.reasons)
    return properties


def client_of(event: WebhookEvent) -> tuple[str | None, str | None]:
    """Return the user agent and IP address of an open or click, where the provider reports them."""
    raw = event.raw
    if event.provider is Provider.SENDGRID:
        return _text(raw.get("useragent")), _text(raw.get("ip"))
    if event.provider is Provider.MAILGUN:
        return _text(_dict(raw.get("client-info")).get("user-agent")), _text(raw.get("ip"))
    if event.provider is Provider.POSTMARK:
        return _text(raw.get("UserAgent")), _text(_dict(raw.get("Geo")).get("IP"))
    detail = _dict(raw.get("open" if event.type is EventType.OPENED else "click"))
    return _text(detail.get("userAgent")), _text(detail.get("ipAddress"))


def our_message_id(event: WebhookEvent) -> str | None:
    """Return the Message-ID header of our email, as `<id@domain>`, where the payload carries it.

    The sender may echo it as custom data named `message_id` (SendGrid custom args, Mailgun
    variables, Postmark metadata, SES tags). Otherwise it comes from the header the provider reports:
    SendGrid `smtp-id`, Mailgun `message.headers`, SES `mail.commonHeaders` or `mail.headers`.
    Postmark reports only its own message id.
    """
    raw = event.raw
    candidates: list[object] = []
    if event.provider is Provider.SENDGRID:
        candidates = [raw.get("message_id"), raw.get("smtp-id")]
    elif event.provider is Provider.MAILGUN:
        candidates = [_dict(raw.get("user-variables")).get("message_id"), event.message_id]
    elif event.provider is Provider.POSTMARK:
        candidates = [_dict(raw.get("Metadata")).get("message_id")]
    else:
        mail = _dict(raw.get("mail"))
        candidates = [
            _first(_dict(mail.get("tags")).get("message_id")),
            _dict(mail.get("commonHeaders")).get("messageId"),
            _header(mail.get("headers"), "message-id"),
        ]

    for candidate in candidates:
        text = _text(candidate)
        if text and len(text) <= MAX_MESSAGE_ID_LENGTH:
            return text if text.startswith("<") else f"<{text}>"
    return None


def _header(headers: object, name: str) -> object:
    if not isinstance(headers, list):
        return None
    for header in headers:
        if isinstance(header, dict) and str(header.get("name", "")).lower() == name:
            return header.get("value")
    return None


def _first(value: object) -> object:
    return value[0] if isinstance(value, list) and value else value


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: object) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip()
