"""Combine the scheduling rules into the instants a sequence's steps fall due.

For each email the order is fixed: first the delay arithmetic of the waits before it (`wait_ends_at`),
then the email's send window, the sequence's quiet hours and the cross-sequence frequency cap
(`earliest_send_at`). The last three are applied together until none of them moves the instant,
because deferring for one rule can land inside another.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from services.sequencer.schedule.cap import FrequencyCap, earliest_under_cap
from services.sequencer.schedule.delays import wait_ends_at
from services.sequencer.schedule.local_time import require_aware, resolve_zone
from services.sequencer.schedule.windows import after_quiet_hours, next_in_window
from services.sequencer.sequences.schema import QuietHours, SendWindow, SequenceDefinition

# Any sensible combination of rules finds a moment within a year. One that does not (a window whose
# only time is always quiet) is a configuration error, not a long wait.
MAX_DEFERRAL = timedelta(days=366)


class NoSendTimeError(ValueError):
    """The send window, quiet hours and cap leave no moment to send within `MAX_DEFERRAL`."""


def earliest_send_at(
    due: datetime,
    zone: ZoneInfo,
    *,
    send_window: SendWindow | None = None,
    quiet_hours: QuietHours | None = None,
    cap: FrequencyCap | None = None,
    recent_sends: Iterable[datetime] = (),
) -> datetime:
    """Return the first instant at or after `due` that satisfies the window, quiet hours and cap.

    Raises:
        NoSendTimeError: the rules exclude every moment in the next `MAX_DEFERRAL`.
    """
    due = require_aware(due, "due")
    sends = list(recent_sends)
    limit = due + MAX_DEFERRAL

    candidate = due
    while candidate <= limit:
        moved = candidate
        if send_window is not None:
            moved = next_in_window(moved, send_window, zone)
        if quiet_hours is not None:
            moved = after_quiet_hours(moved, quiet_hours, zone)
        if cap is not None:
            moved = earliest_under_cap(moved, sends, cap)
        if moved == candidate:
            return candidate
        candidate = moved

    raise NoSendTimeError(
        f"no moment within {MAX_DEFERRAL.days} days of {due.isoformat()} satisfies the send window, "
        "quiet hours and frequency cap together; check that the window's times fall outside quiet hours"
    )


@dataclass(frozen=True)
class PlannedSend:
    """An email step and the instant it is planned to go out."""

    step_id: str
    due_at: datetime


def preview_schedule(
    definition: SequenceDefinition,
    enrolled_at: datetime,
    *,
    contact_timezone: str | None = None,
    cap: FrequencyCap | None = None,
    recent_sends: Iterable[datetime] = (),
) -> list[PlannedSend]:
    """Plan the top-level steps of a sequence for one contact, as if nothing interrupts it.

    Each step starts when the one before it was due, after every deferral, so one late send pushes
    the rest. Waits for an event run to their timeout. The preview stops at the first branch, whose
    outcome is not known in advance. Planned sends count against the cap for the later ones.
    """
    zone = resolve_zone(contact_timezone, definition.timezone)
    sends = list(recent_sends)
    planned: list[PlannedSend] = []
    current = require_aware(enrolled_at, "enrolled_at")

    for step in definition.steps:
        if step.branch is not None:
            break
        if step.wait is not None:
            current = wait_ends_at(step.wait, current, zone)
            continue

        assert step.email is not None and step.id is not None
        current = earliest_send_at(
            current,
            zone,
            send_window=step.email.send_window,
            quiet_hours=definition.quiet_hours,
            cap=cap,
            recent_sends=sends,
        )
        planned.append(PlannedSend(step.id, current))
        sends.append(current)
    return planned
