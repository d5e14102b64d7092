"""Range checks of the instants that clients send, before the instants reach a query or a column."""

from datetime import UTC, datetime


def utc_range_problem(value: datetime) -> str | None:
    """Return why an aware `value` has no UTC form, or None when it has one.

    Columns store UTC, and Python's datetime spans the years 1 to 9999, so an instant such as
    0001-01-01T00:00:00+01:00 (the last hour of year 0 in UTC) cannot be converted for a query.
    """
    try:
        value.astimezone(UTC)
    except OverflowError:
        return f"{value.isoformat()} is outside the years 1 to 9999 in UTC; send an instant inside them"
    return None
