"""The common event model that every provider's webhook is mapped to.

One `WebhookEvent` is one fact about one recipient of one message. The gateway stores it under the
unique key `(provider, provider_event_id)`, so a repeated delivery of the same event is a duplicate.
"""

import math
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator


class Provider(StrEnum):
    SENDGRID = "sendgrid"
    MAILGUN = "mailgun"
    POSTMARK = "postmark"
    SES = "ses"


class EventType(StrEnum):
    """Normalised kind of a provider event."""

    DELIVERED = "delivered"
    # Permanent failure that shows the address should not be mailed again.
    BOUNCED_HARD = "bounced_hard"
    # Final failure of this message that does not prove the address bad (full, blocked, unknown).
    BOUNCED_SOFT = "bounced_soft"
    # Temporary failure: the provider will try the same message again.
    DEFERRED = "deferred"
    OPENED = "opened"
    CLICKED = "clicked"
    UNSUBSCRIBED = "unsubscribed"
    COMPLAINED = "complained"
    # The provider refused to attempt delivery (suppression list, invalid address, virus, template).
    DROPPED = "dropped"


FAILURE_TYPES = frozenset(
    {EventType.BOUNCED_HARD, EventType.BOUNCED_SOFT, EventType.DEFERRED, EventType.DROPPED}
)

# Maximum lengths, in characters, of the receipt columns that store these fields. A longer value
# makes its event invalid, because the database would otherwise reject the whole batch's insert.
MAX_PROVIDER_EVENT_ID_LENGTH = 512
MAX_EMAIL_LENGTH = 320
MAX_PROVIDER_MESSAGE_ID_LENGTH = 512

_TEXT_FIELDS = (
    "provider_event_id",
    "email",
    "message_id",
    "url",
    "smtp_status",
    "diagnostic",
    "send_id",
    "contact_id",
)


def _check_storable_text(value: str) -> str:
    """Return `value` unchanged, or raise ValueError when a database text column cannot store it.

    PostgreSQL text cannot contain U+0000, and a lone UTF-16 surrogate (which JSON `\\ud800`
    escapes decode to) has no UTF-8 encoding, so both PostgreSQL and SQLite drivers raise on it.
    """
    if "\x00" in value:
        raise ValueError("contains the NUL character U+0000")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        surrogate = ord(exc.object[exc.start])
        raise ValueError(f"contains the lone surrogate U+{surrogate:04X}") from None
    return value


def has_non_finite_number(value: object) -> bool:
    """Return whether parsed JSON contains NaN or an infinity at any depth.

    Python's json module reads `NaN` and `Infinity`, but PostgreSQL's json type rejects them.
    The walk uses a stack instead of recursion, because JSON nested near the parser's depth
    limit would exceed Python's recursion limit here.
    """
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return True
        if isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


class WebhookEvent(BaseModel):
    """A provider event in the common model, with the provider's own object kept in `raw`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: Provider
    provider_event_id: str = Field(min_length=1, max_length=MAX_PROVIDER_EVENT_ID_LENGTH)
    type: EventType
    email: str = Field(min_length=1, description="Recipient as the provider gives it, case kept")
    message_id: str | None = Field(max_length=MAX_PROVIDER_MESSAGE_ID_LENGTH)
    occurred_at: AwareDatetime = Field(description="When the provider says it happened, UTC")
    url: str | None = Field(default=None, description="Clicked link, only for `clicked`")
    raw: dict[str, Any]
    smtp_status: str | None = Field(
        default=None, description="Enhanced status code such as 5.1.1, only for failure types"
    )
    diagnostic: str | None = Field(
        default=None, description="Provider's failure text, only for failure types"
    )
    machine_open: bool | None = Field(
        default=None, description="Provider flags the open as automated, only for `opened`"
    )
    send_id: str | None = Field(default=None, description="Our send id echoed back by the provider")
    contact_id: str | None = Field(default=None, description="Our contact id echoed back")

    @field_validator("occurred_at")
    @classmethod
    def _to_utc(cls, value: datetime) -> datetime:
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise ValueError(f"{value.isoformat()} is outside the years 1 to 9999 in UTC") from None

    @field_validator("email")
    @classmethod
    def _strip_email(cls, value: str) -> str:
        stripped = value.strip()
        if not stripped:
            raise ValueError("email is blank")
        if len(stripped) > MAX_EMAIL_LENGTH:
            raise ValueError(f"email has {len(stripped)} characters, more than {MAX_EMAIL_LENGTH}")
        return stripped

    @field_validator(*_TEXT_FIELDS)
    @classmethod
    def _check_storable(cls, value: str | None) -> str | None:
        return None if value is None else _check_storable_text(value)

    @field_validator("raw")
    @classmethod
    def _check_raw_numbers(cls, value: dict[str, Any]) -> dict[str, Any]:
        if has_non_finite_number(value):
            raise ValueError("contains NaN or Infinity, which PostgreSQL's json type rejects")
        return value

    @model_validator(mode="after")
    def _check_type_specific_fields(self) -> "WebhookEvent":
        if self.url is not None and self.type is not EventType.CLICKED:
            raise ValueError(f"url is set on a {self.type} event; only clicked events carry one")
        if self.machine_open is not None and self.type is not EventType.OPENED:
            raise ValueError(f"machine_open is set on a {self.type} event; only opened events")
        failure_fields = self.smtp_status is not None or self.diagnostic is not None
        if failure_fields and self.type not in FAILURE_TYPES:
            raise ValueError(f"smtp_status or diagnostic is set on a {self.type} event")
        return self


class SkipReason(StrEnum):
    # A kind the mapping rules deliberately ignore, such as SendGrid `processed`.
    IGNORED = "ignored"
    # A kind this library does not know; providers add kinds over time.
    UNKNOWN = "unknown"
    # The element is authenticated but malformed; the route should dead-letter it.
    INVALID = "invalid"


class SkippedEvent(BaseModel):
    """A provider event, or the whole payload, that produced no common event."""

    model_config = ConfigDict(frozen=True)

    index: int | None = Field(description="Position in a batch; None for a single-event payload")
    kind: str | None = Field(description="The provider's event name, when one could be read")
    reason: SkipReason
    detail: str


class WebhookResult(BaseModel):
    """Outcome of one verified webhook request."""

    model_config = ConfigDict(frozen=True)

    provider: Provider
    events: list[WebhookEvent] = Field(
        description="Mapped events in payload order; the same event may occur twice in a batch"
    )
    skipped: list[SkippedEvent] = Field(default_factory=list)
    action: Literal["none", "confirm_subscription"] = "none"
    subscribe_url: str | None = Field(
        default=None, description="Validated SNS SubscribeURL to GET when action is confirm"
    )
    token_reused: bool = Field(
        default=False,
        description="Mailgun resent a token already seen with the same event: a retry",
    )
