"""Delivery-failure classification by enhanced status code, with provider labels only as hints.

Provider labels are coarse and can contradict the SMTP status: SES reports some `Transient` bounces
with status 5.4.4, and SendGrid labels blocklist rejections as `bounce`. The enhanced status code
(RFC 3463 / RFC 5248, IANA registry "SMTP Enhanced Status Codes") decides whenever it is decisive.
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .events import EventType, Provider, WebhookEvent

_ENHANCED_STATUS = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})$")

_AUTO_REPLY_TEXT = re.compile(
    r"out of (?:the )?office|auto[- ]?(?:reply|replied|responder|response)|automatic reply"
    r"|vacation (?:reply|message|notice)",
    re.IGNORECASE,
)
_BLOCK_TEXT = re.compile(
    r"block ?list|black ?list|\bblocked\b|spamhaus|spamcop|barracuda|\bdnsbl\b|\brbl\b"
    r"|reputation|\bdmarc\b",
    re.IGNORECASE,
)

_AUTO_REPLY_LABELS = frozenset({"autoresponder", "auto_reply", "auto-reply", "autoreply"})
_BLOCK_LABELS = frozenset({"blocked", "dmarcpolicy"})
_COMPLAINT_LABELS = frozenset({"spamcomplaint", "spamreport", "complaint", "complained", "abuse"})
_HARD_LABELS = frozenset({"permanent", "hardbounce", "bademailaddress", "bounce"})


@dataclass(frozen=True)
class EnhancedStatus:
    status_class: int
    subject: int
    detail: int


def parse_enhanced_status(value: str | None) -> EnhancedStatus | None:
    """Parse `class.subject.detail` such as `5.1.1`; anything else returns None."""
    if value is None:
        return None
    match = _ENHANCED_STATUS.match(value)
    if match is None:
        return None
    return EnhancedStatus(*(int(part) for part in match.groups()))


def _is_hard_status(status: EnhancedStatus) -> bool:
    # Subject 1 is addressing (bad mailbox, bad domain, bad syntax, moved), except detail 5
    # "destination address valid". 5.4.4 is "unable to route": the domain has no mail server.
    if status.status_class != 5:
        return False
    addressing = status.subject == 1 and status.detail != 5
    return addressing or (status.subject, status.detail) == (4, 4)


def _is_soft_status(status: EnhancedStatus) -> bool:
    # Class 4 is temporary. 5.7.x is security or policy (blocklists, DMARC, reputation), which
    # does not describe the mailbox. 5.2.2 is mailbox full.
    if status.status_class == 4:
        return True
    if status.status_class != 5:
        return False
    return status.subject == 7 or (status.subject, status.detail) == (2, 2)


def refine_bounce_type(event_type: EventType, smtp_status: str | None) -> EventType:
    """Let a decisive enhanced status code override the provider's hard/soft bounce label.

    Only `bounced_hard` and `bounced_soft` change; `dropped` and `deferred` never do.
    """
    if event_type not in (EventType.BOUNCED_HARD, EventType.BOUNCED_SOFT):
        return event_type

    status = parse_enhanced_status(smtp_status)
    if status is None:
        return event_type
    if _is_hard_status(status):
        return EventType.BOUNCED_HARD
    if _is_soft_status(status):
        return EventType.BOUNCED_SOFT
    return event_type


class FailureClass(StrEnum):
    """Finer class of a failure, each with its own policy in the consumers."""

    # The address is bad: suppress at once.
    HARD = "hard"
    # The message failed but the address may be fine: count towards the soft-bounce limit.
    SOFT = "soft"
    # The receiver refused us by policy (blocklist, reputation, DMARC): alert on the sending IP,
    # do not suppress the contact.
    BLOCK = "block"
    # Spam report or feedback loop: a consent event, not a bounce.
    COMPLAINT = "complaint"
    # Out-of-office or other automatic reply: not a failure at all.
    AUTO_REPLY = "auto_reply"


def classify_failure(
    *,
    smtp_status: str | None,
    diagnostic: str | None,
    event_type: EventType | None = None,
    provider_label: str | None = None,
) -> FailureClass:
    """Classify a failure report; a decisive enhanced status code wins over every hint.

    `provider_label` is the provider's own word, such as SES `Transient`, SendGrid `blocked` or
    Postmark `AutoResponder`. Class 5 subject 7 is a policy block. Class 4 subject 7 is one only
    when the label or text names a block, because greylisting uses 4.7.x too. Without a decisive
    code the hints apply in this order: complaint, automatic reply, policy block, then the label's
    hard or soft meaning. Soft is the default, because a failure that proves nothing must not
    suppress an address.
    """
    label = (provider_label or "").strip().lower()
    if event_type is EventType.COMPLAINED or label in _COMPLAINT_LABELS:
        return FailureClass.COMPLAINT

    text = diagnostic or ""
    block_hint = label in _BLOCK_LABELS or _BLOCK_TEXT.search(text) is not None
    status = parse_enhanced_status(smtp_status)
    if status is not None:
        if _is_hard_status(status):
            return FailureClass.HARD
        # 4.7.x also covers greylisting, which is a plain retry, so it needs a block hint.
        if status.subject == 7 and (status.status_class == 5 or block_hint):
            return FailureClass.BLOCK
        if _is_soft_status(status):
            return FailureClass.SOFT

    if label in _AUTO_REPLY_LABELS or _AUTO_REPLY_TEXT.search(text):
        return FailureClass.AUTO_REPLY
    if block_hint:
        return FailureClass.BLOCK
    if event_type is EventType.BOUNCED_HARD or label in _HARD_LABELS:
        return FailureClass.HARD
    return FailureClass.SOFT


def _provider_label(provider: Provider, raw: dict[str, Any]) -> str | None:
    label: object = None
    if provider is Provider.SENDGRID:
        label = raw.get("type")
    elif provider is Provider.POSTMARK:
        label = raw.get("Type")
    elif provider is Provider.SES:
        bounce = raw.get("bounce")
        label = bounce.get("bounceType") if isinstance(bounce, dict) else None
    # Mailgun's only label is severity, which the event type already reflects.
    return label if isinstance(label, str) else None


_CLASSIFIED_TYPES = frozenset(
    {EventType.BOUNCED_HARD, EventType.BOUNCED_SOFT, EventType.DEFERRED, EventType.COMPLAINED}
)


def classify_event(event: WebhookEvent) -> FailureClass | None:
    """Classify a mapped bounce, deferral or complaint; other types (dropped too) return None.

    A `dropped` message was never attempted, so it carries no new fact about the address.
    """
    if event.type not in _CLASSIFIED_TYPES:
        return None
    return classify_failure(
        smtp_status=event.smtp_status,
        diagnostic=event.diagnostic,
        event_type=event.type,
        provider_label=_provider_label(event.provider, event.raw),
    )


class SoftBouncePolicy(BaseModel):
    """When repeated soft bounces of one address justify suppressing it (reason `repeated_soft`)."""

    model_config = ConfigDict(frozen=True)

    max_soft_bounces: int = Field(default=5, ge=1, description="Soft bounces that suppress")
    window_days: int = Field(default=30, ge=1, description="Look-back window in days")

    def limit_reached(self, soft_bounce_times: Iterable[datetime], *, now: datetime) -> bool:
        """Return whether the soft bounces in (now - window, now] reach `max_soft_bounces`."""
        since = now - timedelta(days=self.window_days)
        recent = [at for at in soft_bounce_times if since < at <= now]
        return len(recent) >= self.max_soft_bounces
