"""Helpers shared by the provider mappers: typed field access and event construction."""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from .bounces import refine_bounce_type
from .events import FAILURE_TYPES, EventType, Provider, SkippedEvent, SkipReason, WebhookEvent


class InvalidEvent(ValueError):
    """An authenticated provider event that cannot be mapped; the message names the field."""


@dataclass
class MappedPayload:
    events: list[WebhookEvent] = field(default_factory=list)
    skipped: list[SkippedEvent] = field(default_factory=list)

    def skip(self, index: int | None, kind: str | None, reason: SkipReason, detail: str) -> None:
        self.skipped.append(SkippedEvent(index=index, kind=kind, reason=reason, detail=detail))


def require_dict(value: object, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidEvent(f"{name} is missing or not an object")
    return value


def require_str(obj: dict[str, Any], key: str, name: str | None = None) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InvalidEvent(f"{name or key} is missing or not a non-empty string")
    return value


def optional_str(obj: dict[str, Any], key: str, name: str | None = None) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidEvent(f"{name or key} is not a string")
    return value


def echoed_ids(values: object) -> tuple[str | None, str | None]:
    """Read our `send_id` and `contact_id` from the provider's echo of custom data.

    SES tags arrive as lists of strings, the other providers echo plain strings.
    """
    if not isinstance(values, dict):
        return None, None
    return _first_str(values.get("send_id")), _first_str(values.get("contact_id"))


def _first_str(value: object) -> str | None:
    if isinstance(value, list) and value:
        value = value[0]
    return value if isinstance(value, str) and value else None


def build_event(
    *,
    provider: Provider,
    provider_event_id: str,
    event_type: EventType,
    email: str,
    message_id: str | None,
    occurred_at: datetime,
    raw: dict[str, Any],
    url: str | None = None,
    smtp_status: str | None = None,
    diagnostic: str | None = None,
    machine_open: object = None,
    echoed: tuple[str | None, str | None] = (None, None),
) -> WebhookEvent:
    """Build a common event: refine bounces by status code and drop fields foreign to the type."""
    final_type = refine_bounce_type(event_type, smtp_status)
    failure = final_type in FAILURE_TYPES
    is_open = final_type is EventType.OPENED

    try:
        return WebhookEvent(
            provider=provider,
            provider_event_id=provider_event_id,
            type=final_type,
            email=email,
            message_id=message_id,
            occurred_at=occurred_at,
            url=url if final_type is EventType.CLICKED else None,
            raw=raw,
            smtp_status=smtp_status if failure else None,
            diagnostic=(diagnostic or None) if failure else None,
            machine_open=machine_open if is_open and isinstance(machine_open, bool) else None,
            send_id=echoed[0],
            contact_id=echoed[1],
        )
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'event'}: {error['msg']}"
            for error in exc.errors()
        )
        raise InvalidEvent(problems) from exc
