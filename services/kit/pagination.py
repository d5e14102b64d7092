"""Cursor pagination for every list: `limit` and an opaque `cursor`, answered with `next_cursor`."""

import base64
import json
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

from services.kit.problems import invalid

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 500

LimitQuery = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page (1 to 500)")]
CursorQuery = Annotated[str | None, Query(max_length=512, description="The `next_cursor` of the previous page")]

# The ids and versions that lists page by are INTEGER columns, signed 32-bit on PostgreSQL, and
# asyncpg raises on a parameter outside that range (SQLite's driver only beyond 64 bits).
MIN_CURSOR_INTEGER = -(2**31)
MAX_CURSOR_INTEGER = 2**31 - 1
_MALFORMED = "malformed cursor; pass the next_cursor of the previous page"


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


def encode_cursor(*values: Any) -> str:
    """Encode the sort key of the last item of a page: strings, and integers that `decode_cursor` accepts."""
    return base64.urlsafe_b64encode(json.dumps(values, default=str).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, *, arity: int) -> list[Any]:
    """Decode a cursor made by `encode_cursor`; a malformed one is a 422 naming `cursor`.

    A client can send any bytes as a cursor, so each value must be text that the database can bind
    (UTF-8 without NUL, which PostgreSQL rejects) or an integer in the INTEGER range.
    """
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, UnicodeDecodeError) as error:
        raise invalid("cursor", _MALFORMED) from error
    if not isinstance(values, list) or len(values) != arity:
        raise invalid("cursor", _MALFORMED)

    for value in values:
        if not (_is_bindable_text(value) or _is_cursor_integer(value)):
            raise invalid("cursor", _MALFORMED)
    return values


def decode_int_cursor(cursor: str) -> int:
    """Decode a cursor made by `encode_cursor(number)`, such as a row id, into the number."""
    [value] = decode_cursor(cursor, arity=1)
    if not _is_cursor_integer(value):
        raise invalid("cursor", _MALFORMED)
    return int(value)


def decode_time_cursor(cursor: str) -> tuple[datetime, str]:
    """Decode a cursor made by `encode_cursor(at.isoformat(), id)` into the instant in UTC and the id.

    A client can send any bytes as a cursor, so anything but an ISO 8601 instant with a UTC offset
    and a text id is a 422 naming `cursor` instead of a 500 from the query.
    """
    at, item_id = decode_cursor(cursor, arity=2)
    if not isinstance(at, str) or not isinstance(item_id, str):
        raise invalid("cursor", _MALFORMED)

    try:
        instant = datetime.fromisoformat(at)
    except ValueError as error:
        raise invalid("cursor", _MALFORMED) from error

    # Columns store UTC, so an instant without an offset cannot be compared with them, and one
    # whose UTC form falls outside the years 1 to 9999 cannot be converted to it.
    if instant.tzinfo is None:
        raise invalid("cursor", _MALFORMED)
    try:
        return instant.astimezone(UTC), item_id
    except OverflowError as error:
        raise invalid("cursor", _MALFORMED) from error


def _is_bindable_text(value: object) -> bool:
    if not isinstance(value, str) or "\x00" in value:
        return False

    # JSON can carry a lone surrogate such as "\ud800", which has no UTF-8 form.
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _is_cursor_integer(value: object) -> bool:
    # JSON true and false decode to bool, a subclass of int.
    return isinstance(value, int) and not isinstance(value, bool) and MIN_CURSOR_INTEGER <= value <= MAX_CURSOR_INTEGER
