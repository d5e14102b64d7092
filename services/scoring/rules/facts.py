"""Input checking for contacts and events, and their translation into engine facts."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.scoring.rules.compiler import (
    CONTACT_KIND,
    CURRENT_KEY,
    EVENT_KIND,
    KIND_KEY,
    TIME_KEY,
    TYPE_KEY,
    FactLayout,
    PredicateSlot,
    ValueKind,
)
from services.scoring.rules.errors import ScoringInputError
from services.scoring.rules.model import MAX_ABS_NUMBER, NUMBER_DECIMALS, Operator
from services.scoring.rules.regex_safety import search

CONTACT_FACT_ID = "contact"
MAX_EVENT_ID_CHARS = 200
TIMESTAMP_DECIMALS = 3


@dataclass(frozen=True, slots=True)
class EventRecord:
    """A checked event: its id, type and time, and the whole document for field lookups."""

    id: str
    type: str
    occurred_at: datetime
    document: Mapping[str, Any]


def parse_event(raw: object, field: str) -> EventRecord:
    """Check an event document `{id, type, occurred_at, properties?}`, naming `field` on error.

    `occurred_at` is a timezone-aware datetime or an ISO 8601 string with an offset.
    """
    if not isinstance(raw, Mapping):
        raise ScoringInputError(field, "must be an object with id, type and occurred_at")

    event_id = raw.get("id")
    if isinstance(event_id, int) and not isinstance(event_id, bool):
        event_id = str(event_id)
    if not isinstance(event_id, str) or not event_id or len(event_id) > MAX_EVENT_ID_CHARS:
        raise ScoringInputError(
            f"{field}.id", f"must be a non-empty string of at most {MAX_EVENT_ID_CHARS} characters"
        )

    event_type = raw.get("type")
    if not isinstance(event_type, str) or not event_type:
        raise ScoringInputError(f"{field}.type", "must be a non-empty string")

    properties = raw.get("properties")
    if properties is not None and not isinstance(properties, Mapping):
        raise ScoringInputError(f"{field}.properties", "must be an object")

    occurred_at = parse_time(raw.get("occurred_at"), f"{field}.occurred_at")
    return EventRecord(id=event_id, type=event_type, occurred_at=occurred_at, document=raw)


def parse_time(value: object, field: str) -> datetime:
    """Return a timezone-aware datetime from a datetime or an ISO 8601 string with an offset."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ScoringInputError(field, f"invalid ISO 8601 timestamp {value!r}") from None
    if not isinstance(value, datetime):
        raise ScoringInputError(field, "must be a timestamp")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ScoringInputError(field, "needs a UTC offset, e.g. 2024-06-04T10:00:00+00:00")
    return value


def contact_fact(layout: FactLayout, contact: Mapping[str, Any]) -> dict[str, Any]:
    """Build the contact fact, deriving `email_domain` from `email` unless the contact has one."""
    document: Mapping[str, Any] = contact
    if "email_domain" not in contact and isinstance(contact.get("email"), str):
        document = {**contact, "email_domain": _email_domain(contact["email"])}

    fact = {"id": CONTACT_FACT_ID, KIND_KEY: CONTACT_KIND}
    fact.update(_layout_values(layout, document, event_type=None))
    return fact


def event_fact(
    layout: FactLayout | None, event: EventRecord, *, fact_id: str, current: bool
) -> dict[str, Any]:
    fact: dict[str, Any] = {
        "id": fact_id,
        KIND_KEY: EVENT_KIND,
        TYPE_KEY: event.type,
        TIME_KEY: round(event.occurred_at.timestamp(), TIMESTAMP_DECIMALS),
        CURRENT_KEY: 1 if current else 0,
    }
    if layout is not None:
        fact.update(_layout_values(layout, event.document, event_type=event.type))
    return fact


def _layout_values(
    layout: FactLayout, document: Mapping[str, Any], *, event_type: str | None
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for slot in layout.fields:
        value = _typed(_resolve(document, slot.path), slot.kind)
        if value is not None:
            values[slot.key] = value

    for predicate in layout.predicates:
        types = predicate.event_types
        if event_type is not None and types is not None and event_type not in types:
            continue
        values[predicate.key] = _test(predicate, _resolve(document, predicate.path))
    return values


def _resolve(document: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = document
    for part in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _typed(value: Any, kind: ValueKind) -> Any:
    if kind is ValueKind.BOOLEAN:
        return value if isinstance(value, bool) else None
    if kind is ValueKind.TEXT:
        return value if isinstance(value, str) else None
    if kind is ValueKind.FOLDED_TEXT:
        return value.casefold() if isinstance(value, str) else None
    return engine_number(value)


def engine_number(value: Any) -> int | float | None:
    """Return `value` as a number the engine can read, or None when it is not one.

    Values beyond 1e15 in magnitude count as missing, and decimals are rounded to 4 places, so
    no number reaches the engine in exponent notation.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if abs(value) > MAX_ABS_NUMBER:
        return None
    if isinstance(value, int):
        return value
    rounded = round(value, NUMBER_DECIMALS)
    return int(rounded) if rounded.is_integer() else rounded


def _test(predicate: PredicateSlot, value: Any) -> bool:
    if predicate.op is Operator.EXISTS:
        return value is not None
    if predicate.op is Operator.NOT_EXISTS:
        return value is None
    if not isinstance(value, str):
        return False
    if predicate.pattern is not None:
        return search(predicate.pattern, value)

    needle = predicate.value or ""
    subject = value
    if not predicate.case_sensitive:
        needle = needle.casefold()
        subject = subject.casefold()

    if predicate.op is Operator.CONTAINS:
        return needle in subject
    if predicate.op is Operator.NOT_CONTAINS:
        return needle not in subject
    if predicate.op is Operator.STARTS_WITH:
        return subject.startswith(needle)
    return subject.endswith(needle)


def _email_domain(email: str) -> str | None:
    _local, separator, domain = email.rpartition("@")
    return domain.strip().lower() if separator and domain.strip() else None
