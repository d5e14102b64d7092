"""The status of a sent message, derived from its send state and all of its events.

The status is a function of the set of events, never of the order they arrived in, so a late or
repeated event cannot move it backwards:

- `complained` over everything; then `clicked`, then `opened` (human hits only). Engagement proves
  the message was delivered, so a bounce of an opened message is stale.
- Without engagement, the later by `occurred_at` of the newest delivery and the newest bounce (or
  drop, where the provider refused to try) decides between `delivered` and `bounced`: a bounce older
  than the delivery is stale.
- Without any event, the send state decides: `sending`, `retrying`, `sent`, `failed` or `cancelled`.

Each `*_at` is the first occurrence of its kind of event.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

HUMAN = "human"

_STATE_STATUS = {
    "sending": "sending",
    "awaiting_reply": "sending",
    "retrying": "retrying",
    "sent": "sent",
    "failed_permanent": "failed",
    "failed_temporary": "failed",
    "cancelled": "cancelled",
}


@dataclass(frozen=True)
class EventFact:
    """The parts of a message event the status depends on."""

    type: str
    occurred_at: datetime
    verdict: str | None = None


@dataclass(frozen=True)
class DerivedStatus:
    status: str
    delivered_at: datetime | None = None
    opened_at: datetime | None = None
    clicked_at: datetime | None = None
    bounced_at: datetime | None = None
    complained_at: datetime | None = None
    unsubscribed_at: datetime | None = None

    @property
    def bounce_is_current(self) -> bool:
        """Whether a bounce is the message's latest delivery outcome, so it may suppress the contact."""
        return self.status == "bounced"


def _first(events: Iterable[EventFact], kind: str, *, human_only: bool = False) -> datetime | None:
    times = [event.occurred_at for event in events if event.type == kind and (not human_only or event.verdict == HUMAN)]
    return min(times) if times else None


def _last(events: Iterable[EventFact], kind: str) -> datetime | None:
    times = [event.occurred_at for event in events if event.type == kind]
    return max(times) if times else None


def derive_status(state: str, events: list[EventFact]) -> DerivedStatus:
    """Return the status and first event times of a message in send `state` with `events`."""
    opened_at = _first(events, "opened", human_only=True)
    clicked_at = _first(events, "clicked", human_only=True)
    complained_at = _first(events, "complained")
    delivered_at = _first(events, "delivered")
    bounced_at = _first(events, "bounced") or _first(events, "dropped")

    if complained_at is not None:
        status = "complained"
    elif clicked_at is not None:
        status = "clicked"
    elif opened_at is not None:
        status = "opened"
    else:
        failures = [moment for moment in (_last(events, "bounced"), _last(events, "dropped")) if moment is not None]
        status = _delivery_status(state, _last(events, "delivered"), max(failures) if failures else None)

    return DerivedStatus(
        status=status,
        delivered_at=delivered_at,
        opened_at=opened_at,
        clicked_at=clicked_at,
        bounced_at=bounced_at,
        complained_at=complained_at,
        unsubscribed_at=_first(events, "unsubscribed"),
    )


def _delivery_status(state: str, last_delivered: datetime | None, last_bounced: datetime | None) -> str:
    if last_bounced is not None and (last_delivered is None or last_bounced > last_delivered):
        return "bounced"
    if last_delivered is not None:
        return "delivered"
    return _STATE_STATUS.get(state, state)
