"""The end of a wait, computed in the contact's local time.

Weeks and days are calendar arithmetic: the wait ends at the same local wall-clock time that many
days later, so "wait 1 day" after 10:00 ends at 10:00 even across a DST change. Hours and minutes are
elapsed time: "wait 24 hours" from 12:00 EST on 2024-03-09 ends at 13:00 EDT on 2024-03-10.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from services.sequencer.schedule.local_time import local_datetime, local_instant, require_aware, to_instant
from services.sequencer.sequences.schema import Duration, WaitSpec, Weekday


def add_duration(start: datetime, duration: Duration, zone: ZoneInfo) -> datetime:
    """Add calendar weeks and days in `zone`, then elapsed hours and minutes; return UTC."""
    start = require_aware(start, "start")
    calendar_days = duration.weeks * 7 + duration.days
    moved = start
    if calendar_days:
        local = local_datetime(start, zone).replace(tzinfo=None)
        moved = to_instant(local + timedelta(days=calendar_days), zone)
    return moved + timedelta(hours=duration.hours, minutes=duration.minutes)


def days_later_at(start: datetime, days: int, at: time, zone: ZoneInfo) -> datetime:
    """Return local `at` on the local date `days` after `start`'s local date.

    With `days=0` it is the next `at` at or after `start` (today, or tomorrow when `at` has passed).
    "Next day at 09:00" is `days=1, at=09:00`.
    """
    start = require_aware(start, "start")
    local_day = local_datetime(start, zone).date()
    due = local_instant(local_day + timedelta(days=days), at, zone)
    if due < start:
        due = local_instant(local_day + timedelta(days=days + 1), at, zone)
    return due


def next_weekday_at(start: datetime, weekday: Weekday, at: time, zone: ZoneInfo) -> datetime:
    """Return the first local `weekday` at `at` that is at or after `start`."""
    start = require_aware(start, "start")
    local_day = local_datetime(start, zone).date()
    for offset in range(8):
        day = local_day + timedelta(days=offset)
        if day.weekday() != weekday.index:
            continue
        due = local_instant(day, at, zone)
        if due >= start:
            return due
    raise AssertionError("a weekday recurs within 8 days")


def until_local(until: datetime, zone: ZoneInfo) -> datetime:
    """Return the instant of a fixed date and time: local to `zone` when naive, as given otherwise."""
    if until.tzinfo is None:
        return to_instant(until, zone)
    return require_aware(until, "until")


def wait_ends_at(wait: WaitSpec, started_at: datetime, zone: ZoneInfo) -> datetime:
    """Return when a wait step started at `started_at` ends.

    For `until_event` this is the timeout; the caller ends the wait earlier when the event arrives.
    A fixed `until` in the past ends the wait at `started_at`, never before it.
    """
    started_at = require_aware(started_at, "started_at")
    if wait.mode == "weekday":
        assert wait.until_weekday is not None and wait.at is not None
        return next_weekday_at(started_at, wait.until_weekday, wait.at, zone)
    if wait.mode == "until":
        assert wait.until is not None
        return max(until_local(wait.until, zone), started_at)
    if wait.mode == "event":
        assert wait.timeout is not None
        return add_duration(started_at, wait.timeout, zone)
    if wait.at is not None:
        return days_later_at(started_at, wait.weeks * 7 + wait.days, wait.at, zone)
    return add_duration(started_at, wait.duration(), zone)
