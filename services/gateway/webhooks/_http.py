"""Request helpers shared by the provider modules."""

from collections.abc import Mapping


def lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Return the headers keyed by lower-case name, since HTTP header names are case-insensitive."""
    return {name.lower(): value for name, value in headers.items()}
