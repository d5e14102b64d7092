"""Send windows and quiet hours: move an instant forward to the next moment sending is allowed.

Both work on the contact's local calendar and only ever move an instant later, so they can never
shorten the delay computed before them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from services.sequencer.schedule.local_time import local_datetime, local_instant, require_aware, start_of_next_day
from services.sequencer.sequences.schema import QuietHours, SendWindow, Weekday

# A week plus a day: every weekday occurs in it, whatever the local day the search starts on.
_SEARCH_DAYS = 8

_Segment = tuple[time, time | None]


def next_in_window(instant: datetime, window: SendWindow, zone: ZoneInfo) -> datetime:
    """Return the first moment at or after `instant` that the send window allows.

    A window without `end` allows exactly its `start` on its weekdays (e.g. Mon-Fri at 09:00), so
    10:00 on a Monday moves to 09:00 on Tuesday. A window with `end` allows any moment in [start, end).
    """
    instant = require_aware(instant, "instant")
    if window.end is None:
        return _next_point(instant, window.weekdays, window.start, zone)
    return _next_allowed(instant, window.weekdays, [(window.start, window.end)], zone)


def after_quiet_hours(instant: datetime, quiet_hours: QuietHours, zone: ZoneInfo) -> datetime:
    """Return the first moment at or after `instant` outside quiet hours and on an allowed weekday."""
    instant = require_aware(instant, "instant")
    return _next_allowed(instant, quiet_hours.weekdays, _allowed_segments(quiet_hours), zone)


def _allowed_segments(quiet_hours: QuietHours) -> list[_Segment]:
    # A segment's end of None means the next local midnight.
    start, end = quiet_hours.start, quiet_hours.end
    if start > end:
        return [(end, start)]

    segments: list[_Segment] = []
    if start > time(0, 0):
        segments.append((time(0, 0), start))
    segments.append((end, None))
    return segments


def _next_point(instant: datetime, weekdays: Iterable[Weekday], at: time, zone: ZoneInfo) -> datetime:
    allowed = {weekday.index for weekday in weekdays}
    first_day = local_datetime(instant, zone).date()
    for offset in range(_SEARCH_DAYS):
        day = first_day + timedelta(days=offset)
        if day.weekday() not in allowed:
            continue
        candidate = local_instant(day, at, zone)
        if candidate >= instant:
            return candidate
    raise AssertionError("an allowed weekday recurs within 8 days")


def _next_allowed(instant: datetime, weekdays: Iterable[Weekday], segments: list[_Segment], zone: ZoneInfo) -> datetime:
    allowed = {weekday.index for weekday in weekdays}
    first_day = local_datetime(instant, zone).date()
    for offset in range(_SEARCH_DAYS):
        day = first_day + timedelta(days=offset)
        if day.weekday() not in allowed:
            continue
        for start, end in segments:
            opens = local_instant(day, start, zone)
            closes = start_of_next_day(day, zone) if end is None else local_instant(day, end, zone)
            if instant < closes and opens < closes:
                return max(instant, opens)
    raise AssertionError("an allowed weekday recurs within 8 days")
