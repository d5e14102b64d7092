"""Local wall-clock time in a contact's IANA timezone, with explicit DST rules.

Every function takes and returns aware datetimes and converts through `zoneinfo` only, so nothing
depends on the process timezone (`TZ`) or on a database session's timezone.

DST rules, the same as RFC 5545 section 3.3.5 uses for recurring events:
- A local time in the spring-forward gap does not exist. It is read with the UTC offset from before
  the gap, which moves it forward by the length of the gap. 02:30 on 2024-03-10 in New York is 03:30 EDT.
- A local time in the autumn fold occurs twice and means its first occurrence. 01:30 on 2024-11-03 in
  New York is 01:30 EDT (05:30Z), not 01:30 EST.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

LocalTimeKind = Literal["normal", "gap", "fold"]


def require_aware(value: datetime, name: str) -> datetime:
    """Return `value` in UTC, or raise ValueError naming `name` when it has no offset."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime with an offset, got naive {value.isoformat()}")
    return value.astimezone(UTC)


def resolve_zone(contact_timezone: str | None, default_timezone: str) -> ZoneInfo:
    """Return the contact's zone, or the sequence's default when the contact has none or an unknown one.

    Raises:
        ValueError: the default timezone is not a known IANA name either.
    """
    if contact_timezone:
        try:
            return ZoneInfo(contact_timezone)
        except (ZoneInfoNotFoundError, ValueError):
            pass

    try:
        return ZoneInfo(default_timezone)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(f"unknown default timezone {default_timezone!r}") from error


def classify_local_time(local: datetime, zone: ZoneInfo) -> LocalTimeKind:
    """Say whether a naive local time exists once, not at all (gap) or twice (fold) in `zone`."""
    first = local.replace(tzinfo=zone, fold=0)
    second = local.replace(tzinfo=zone, fold=1)
    if first.utcoffset() == second.utcoffset():
        return "normal"

    round_trip = first.astimezone(UTC).astimezone(zone).replace(tzinfo=None)
    return "fold" if round_trip == local else "gap"


def to_instant(local: datetime, zone: ZoneInfo) -> datetime:
    """Convert a naive local wall-clock time in `zone` to an aware UTC instant.

    Applies the module's DST rules: a time in a gap moves forward by the gap, a time in a fold
    means its first occurrence.
    """
    if local.tzinfo is not None:
        raise ValueError(f"to_instant expects a naive local time, got {local.isoformat()}")

    # With fold=0, zoneinfo reads a gap time with the offset before the transition and a fold time
    # as the first occurrence (PEP 495), which are exactly the two rules above.
    return local.replace(tzinfo=zone, fold=0).astimezone(UTC)


def local_instant(day: date, at: time, zone: ZoneInfo) -> datetime:
    """Return the UTC instant of local wall-clock `at` on local `day` in `zone`."""
    return to_instant(datetime.combine(day, at), zone)


def local_datetime(instant: datetime, zone: ZoneInfo) -> datetime:
    """Return `instant` as an aware datetime on the wall clock of `zone`."""
    return require_aware(instant, "instant").astimezone(zone)


def start_of_next_day(day: date, zone: ZoneInfo) -> datetime:
    """Return the UTC instant of local midnight after `day`."""
    return local_instant(day + timedelta(days=1), time(0, 0), zone)
