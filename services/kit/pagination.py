"""Cursor pagination for every list: `limit` and an opaque `cursor`, answered with `next_cursor`."""

import base64
import json
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

from services.kit.problems import invalid

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 500

LimitQuery = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page (1 to 500)")]
CursorQuery = Annotated[str | None, Query(max_length=512, description="The `next_cursor` of the previous page")]


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


def encode_cursor(*values: Any) -> str:
    """Encode the sort key of the last item of a page."""
    return base64.urlsafe_b64encode(json.dumps(values, default=str).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, *, arity: int) -> list[Any]:
    """Decode a cursor made by `encode_cursor`; a malformed one is a 422 naming `cursor`."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, UnicodeDecodeError) as error:
        raise invalid("cursor", "malformed cursor; pass the next_cursor of the previous page") from error
    if not isinstance(values, list) or len(values) != arity:
        raise invalid("cursor", "malformed cursor; pass the next_cursor of the previous page")
    return values


def decode_time_cursor(cursor: str) -> tuple[datetime, str]:
    """Decode a cursor made by `encode_cursor(at.isoformat(), id)` into the instant and the id.

    A client can send any bytes as a cursor, so anything but an ISO 8601 instant and a text id is
    a 422 naming `cursor` instead of a 500 from the query.
    """
    at, item_id = decode_cursor(cursor, arity=2)
    if not isinstance(at, str) or not isinstance(item_id, str):
        raise invalid("cursor", "malformed cursor; pass the next_cursor of the previous page")

    try:
        instant = datetime.fromisoformat(at)
    except ValueError as error:
        raise invalid("cursor", "malformed cursor; pass the next_cursor of the previous page") from error
    return instant, item_id
