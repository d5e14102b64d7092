"""Frequency cap across sequences: at most N marketing sends per rolling period for one contact."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.sequencer.schedule.local_time import require_aware


@dataclass(frozen=True)
class FrequencyCap:
    """At most `max_sends` marketing emails to one contact in any rolling `period`."""

    max_sends: int
    period: timedelta

    def __post_init__(self) -> None:
        if self.max_sends < 1:
            raise ValueError(f"max_sends must be at least 1, got {self.max_sends}")
        if self.period <= timedelta(0):
            raise ValueError(f"period must be longer than zero, got {self.period}")


def earliest_under_cap(candidate: datetime, recent_sends: Iterable[datetime], cap: FrequencyCap) -> datetime:
    """Return the first instant at or after `candidate` at which one more send stays within the cap.

    A send at `t` is allowed when fewer than `max_sends` of `recent_sends` fall in the window
    (t - period, t]. The send is deferred, never dropped. `recent_sends` are the contact's marketing
    sends from every sequence, already made or already booked; sends after the returned instant are
    not counted against it.
    """
    candidate = require_aware(candidate, "candidate")
    sends = sorted(require_aware(sent, "recent_sends[]") for sent in recent_sends)

    allowed_at = candidate
    while True:
        in_window = [sent for sent in sends if allowed_at - cap.period < sent <= allowed_at]
        if len(in_window) < cap.max_sends:
            return allowed_at

        # Once the oldest sends that put the count over the limit are a full period old, they drop out
        # of the window, which is open at its start.
        excess = len(in_window) - cap.max_sends
        allowed_at = in_window[excess] + cap.period
