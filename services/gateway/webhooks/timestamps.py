"""Provider timestamps to aware UTC datetimes with microsecond precision, and freshness windows."""

import re
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from enum import StrEnum

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# SES writes `mail.timestamp` both as `...Z` and as `... +0000`; fromisoformat rejects the space.
_SPACE_BEFORE_OFFSET = re.compile(r"\s+(?=(?:Z|[+-]\d{2}:?\d{2})$)")


def datetime_from_epoch(value: object) -> datetime:
    """Convert epoch seconds (int, float or numeric string) to a UTC datetime, truncated to µs.

    Floats go through their shortest decimal form, so `1741944600.00001` becomes 10 µs and not
    the 9 µs that binary rounding of the float would give.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected epoch seconds as a number, got {type(value).__name__}")

    try:
        seconds = Decimal(repr(value) if isinstance(value, float) else value)
    except InvalidOperation as exc:
        raise ValueError(f"invalid epoch seconds {value!r}") from exc
    if not seconds.is_finite() or seconds < 0:
        raise ValueError(f"invalid epoch seconds {value!r}")

    microseconds = int(seconds.scaleb(6).to_integral_value(rounding=ROUND_DOWN))
    try:
        return _EPOCH + timedelta(microseconds=microseconds)
    except OverflowError as exc:
        raise ValueError(f"epoch seconds out of range: {value!r}") from exc


def parse_iso_datetime(value: object) -> datetime:
    """Parse an ISO 8601 string with an offset to UTC; digits beyond microseconds are truncated."""
    if not isinstance(value, str):
        raise ValueError(f"expected an ISO 8601 string, got {type(value).__name__}")

    try:
        parsed = datetime.fromisoformat(_SPACE_BEFORE_OFFSET.sub("", value.strip()))
    except ValueError as exc:
        raise ValueError(f"invalid ISO 8601 datetime {value!r}") from exc
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError(f"datetime {value!r} has no UTC offset")

    # A time near either end of the calendar, such as 0001-01-01T00:00:00+01:00, can lie outside
    # the years 1 to 9999 once converted to UTC.
    try:
        return parsed.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError(f"datetime {value!r} is outside the years 1 to 9999 in UTC") from exc


class WindowViolation(StrEnum):
    STALE = "stale"
    FUTURE = "future"


def check_window(
    signed_at: datetime, *, now: datetime, max_age_s: int, max_future_s: int
) -> WindowViolation | None:
    """Return how `signed_at` falls outside [now - max_age_s, now + max_future_s], or None."""
    if signed_at < now - timedelta(seconds=max_age_s):
        return WindowViolation.STALE
    if signed_at > now + timedelta(seconds=max_future_s):
        return WindowViolation.FUTURE
    return None
