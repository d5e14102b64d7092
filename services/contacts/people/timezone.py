"""Validate IANA time zone names such as `Europe/Berlin`."""

from __future__ import annotations

import functools
import zoneinfo

from services.contacts.people.errors import FieldValueError


class InvalidTimezoneError(FieldValueError):
    """A time zone name that is not in the IANA time zone database."""


def validate_timezone(raw: object, *, field: str = "timezone") -> str:
    """Return the trimmed IANA name in `raw`, or raise InvalidTimezoneError naming `field`.

    Names are case-sensitive, as in the tz database. A name that differs only in case gets a
    suggestion in the error detail. Offsets such as `+02:00` are rejected because they do not
    follow daylight saving time.
    """
    if not isinstance(raw, str):
        raise InvalidTimezoneError(field, f"invalid {field}", f"expected a string, got {type(raw).__name__}", value=raw)

    name = raw.strip()
    if name in _known_timezones():
        return name

    raise InvalidTimezoneError(field, f"invalid {field}", _explain_unknown(name), value=raw)


def load_timezone(raw: object, *, field: str = "timezone") -> zoneinfo.ZoneInfo:
    """Return the ZoneInfo for a valid name; raises InvalidTimezoneError like validate_timezone."""
    return zoneinfo.ZoneInfo(validate_timezone(raw, field=field))


# "localtime" names whatever zone the server runs in, and "Factory" is the tz database's placeholder
# for "zone not configured": neither describes where a contact lives.
_EXCLUDED_NAMES = frozenset({"localtime", "Factory"})


@functools.cache
def _known_timezones() -> frozenset[str]:
    # Membership in this set, rather than a bare ZoneInfo() call, keeps out files in the zoneinfo
    # folder that are not zones (such as "posixrules") and any path-like input.
    return frozenset(zoneinfo.available_timezones()) - _EXCLUDED_NAMES


@functools.cache
def _timezones_by_lower_case() -> dict[str, str]:
    return {name.lower(): name for name in _known_timezones()}


def _explain_unknown(name: str) -> str:
    if not name:
        return "the time zone is empty; send an IANA name such as 'Europe/Berlin'"

    suggestion = _timezones_by_lower_case().get(name.lower())
    if suggestion is not None:
        return f"{name!r} is not an IANA time zone name; did you mean {suggestion!r}?"

    return f"{name!r} is not an IANA time zone name; send a name such as 'Europe/Berlin' or 'UTC'"
