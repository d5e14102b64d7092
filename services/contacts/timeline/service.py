"""Recording behaviour events on a contact's timeline, once per event id.

`record_events` stores a list of events in the caller's transaction. It looks up the known event
ids, and the contacts by id and by email match key, with one query each. It creates the contacts
that are missing, adds the new events and publishes each as `contact.event_recorded`. Then it
applies the consent effects of unsubscribes, bounces and complaints in `occurred_at` order. Each event gets its own
result, so one bad event in a batch fails only itself.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from sqlalchemy import and_, insert, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.contacts.changes import ContactChanges
from services.contacts.consent.effects import (
    BOUNCE_CLASSES,
    BOUNCED_EVENT,
    CONSENT_EVENT_TYPES,
    UNSUBSCRIBE_EVENT_SOURCES,
    UNSUBSCRIBED_EVENT,
    apply_event_effects,
)
from services.contacts.consent.service import TOPIC_PATTERN
from services.contacts.people.email import InvalidEmailError, normalise_email
from services.contacts.people.models import Contact
from services.contacts.people.service import create_contact, find_by_keys, get_contact
from services.contacts.settings import ContactsSettings
from services.contacts.timeline.models import RecordedEvent, TimelineEvent
from services.kit import clock
from services.kit.contracts import contacts as topics
from services.kit.logging import get_logger
from services.kit.outbox import Outbox
from services.kit.problems import Conflict, NotFound, Problem, field_error, invalid

log = get_logger(__name__)

MAX_MESSAGE_ID_LENGTH = 200
# Segment filters read property paths of at most 5 levels and scoring rules at most 8. pydantic-core
# 2.50 raises on serialising a value nested about 255 levels deep, so deeper properties fail later.
MAX_PROPERTY_DEPTH = 32
# The earliest occurred_at accepted, the Unix epoch. An earlier date is most likely a zero or
# default value, and consumers compute with it: scoring subtracts its time windows from it, which
# overflows Python's datetime near year 1.
MIN_OCCURRED_AT = datetime(1970, 1, 1, tzinfo=UTC)


class EventIn(BaseModel):
    """A behaviour event as callers send it."""

    id: str | None = Field(default=None, min_length=1, max_length=128, description="Your event id; the same id is stored once")
    contact_id: str | None = Field(default=None, max_length=32, description="Used when given; else `email` finds or creates the contact")
    email: str | None = Field(default=None, max_length=320)
    type: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_.:-]*$")
    occurred_at: datetime | None = Field(default=None, description="When it happened, with a UTC offset; default now")
    properties: dict[str, Any] = Field(default_factory=dict)

    @field_validator("occurred_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("needs a UTC offset, e.g. 2024-05-01T10:00:00Z")
        return value

    @field_validator("properties")
    @classmethod
    def _check_depth(cls, value: dict[str, Any]) -> dict[str, Any]:
        # Checked here rather than in check_properties, because the gateway serialises the model
        # before it forwards it, and that fails on deep nesting.
        if _nesting_depth(value) > MAX_PROPERTY_DEPTH:
            raise ValueError(f"properties are nested more than {MAX_PROPERTY_DEPTH} levels deep; flatten them")
        # A lone surrogate such as \ud800 is valid JSON but not text. Stored, it would reach the
        # scoring engine, which rejects it, and each rescore of a model whose rules read it would fail.
        path = _first_invalid_text(value)
        if path is not None:
            raise ValueError(f"properties.{path} is invalid text: it contains a lone surrogate such as \\ud800; send UTF-8 text")
        return value

    @model_validator(mode="after")
    def _check(self) -> EventIn:
        if not self.contact_id and not self.email:
            raise ValueError("either contact_id or email is required")
        return self


def _first_invalid_text(value: object) -> str | None:
    """Return the path of the first key or string in `value` that cannot be encoded as UTF-8, or None."""
    pending: list[tuple[object, str]] = [(value, "")]
    while pending:
        item, path = pending.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return path
        elif isinstance(item, dict):
            for key, child in item.items():
                # The path goes into the error message, so a bad key is written with escapes.
                name = str(key).encode("utf-8", "backslashreplace").decode("utf-8")
                child_path = f"{path}.{name}" if path else name
                pending.append((key, child_path))
                pending.append((child, child_path))
        elif isinstance(item, list):
            pending.extend((child, f"{path}[{index}]") for index, child in enumerate(item))
    return None


def _nesting_depth(value: object) -> int:
    """Return how deep objects and arrays nest in `value`, counting one level past MAX_PROPERTY_DEPTH at most."""
    deepest = 0
    pending: list[tuple[object, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if deepest > MAX_PROPERTY_DEPTH:
                break
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
    return deepest


@dataclass
class EventResult:
    index: int
    status: Literal["stored", "duplicate", "rejected"]
    id: str | None = None
    contact_id: str | None = None
    error: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"index": self.index, "status": self.status}
        if self.id is not None:
            body["id"] = self.id
        if self.contact_id is not None:
            body["contact_id"] = self.contact_id
        if self.error is not None:
            body["error"] = self.error
        return body


@dataclass
class _Pending:
    index: int
    incoming: EventIn
    event_id: str
    occurred_at: datetime
    email_key: str | None = None
    email: str | None = None
    result: EventResult | None = None
    # The earlier item of the same list with this event id, when there is one.
    first: _Pending | None = None


def check_properties(incoming: EventIn) -> None:
    """Reject the properties a consent event needs in a fixed form, naming the bad property."""
    properties = incoming.properties
    message_id = properties.get("message_id")
    if message_id is not None and (not isinstance(message_id, str) or not 0 < len(message_id) <= MAX_MESSAGE_ID_LENGTH):
        raise invalid("properties.message_id", f"expected a string of 1 to {MAX_MESSAGE_ID_LENGTH} characters")

    if incoming.type == BOUNCED_EVENT and properties.get("bounce_class") not in BOUNCE_CLASSES:
        raise invalid("properties.bounce_class", f"an email_bounced event needs bounce_class {', '.join(BOUNCE_CLASSES)}", "missing")

    if incoming.type == UNSUBSCRIBED_EVENT:
        topic = properties.get("topic")
        if topic is not None and (not isinstance(topic, str) or not TOPIC_PATTERN.fullmatch(topic)):
            raise invalid("properties.topic", "a topic is lower-case letters, digits, '_' and '-'")
        source = properties.get("source")
        if source is not None and source not in UNSUBSCRIBE_EVENT_SOURCES:
            raise invalid("properties.source", f"the source of an unsubscribe is one of {', '.join(UNSUBSCRIBE_EVENT_SOURCES)}")


async def record_events(
    session: AsyncSession,
    outbox: Outbox,
    items: Sequence[tuple[int, EventIn]],
    changes: ContactChanges,
    settings: ContactsSettings,
    *,
    create_contacts: bool = True,
) -> list[EventResult]:
    """Store `items` (index, event) in the caller's transaction and return one result per item.

    With `create_contacts` False an unknown contact is a 404 for its event instead of a new contact.
    Nothing is committed here.
    """
    now = clock.now()
    pending = [_prepare(index, incoming, now, settings) for index, incoming in items]
    live = [item for item in pending if item.result is None]

    await _mark_duplicates(session, live)
    live = [item for item in live if item.result is None]
    firsts = [item for item in live if item.first is None]
    contacts = await _resolve_contacts(session, firsts, changes, create_contacts)
    _mark_repeats([item for item in live if item.first is not None], contacts)

    stored: list[RecordedEvent] = []
    for item in firsts:
        if item.result is not None:
            continue
        contact = contacts[item.index]
        event = RecordedEvent(
            id=item.event_id,
            contact_id=contact.id,
            type=item.incoming.type,
            occurred_at=item.occurred_at,
            received_at=now,
            properties=item.incoming.properties,
            message_id=item.incoming.properties.get("message_id"),
        )
        stored.append(event)
        outbox.publish(session, topics.EVENT_RECORDED, topics.EventRecorded(event=as_contract(event)))
        changes.event(contact.id, event.type, event.occurred_at)
        item.result = EventResult(item.index, "stored", event.id, contact.id)
    await _insert(session, stored)

    for event in sorted(stored, key=lambda stored_event: stored_event.occurred_at):
        if event.type in CONSENT_EVENT_TYPES:
            await apply_event_effects(session, outbox, event, changes, settings)

    return [item.result for item in pending if item.result is not None]


async def _insert(session: AsyncSession, events: list[RecordedEvent]) -> None:
    """Insert the events with one executemany, after the contacts created for them."""
    if not events:
        return
    if session.new:
        await session.flush()
    await session.exec(insert(TimelineEvent.__table__), params=[event.values() for event in events])  # type: ignore[attr-defined, call-overload]


def _prepare(index: int, incoming: EventIn, now: datetime, settings: ContactsSettings) -> _Pending:
    occurred_at = incoming.occurred_at or now
    item = _Pending(index, incoming, incoming.id or uuid.uuid4().hex, occurred_at)
    try:
        if occurred_at > now + timedelta(seconds=settings.max_event_future_s):
            raise invalid("occurred_at", f"{occurred_at.isoformat()} is in the future; send when the event happened")
        if occurred_at < MIN_OCCURRED_AT:
            raise invalid("occurred_at", f"{occurred_at.isoformat()} is before {MIN_OCCURRED_AT.isoformat()}; send when the event happened")
        check_properties(incoming)
        if not incoming.contact_id:
            address = normalise_email(incoming.email)
            item.email, item.email_key = address.address, address.match_key
    except InvalidEmailError as error:
        item.result = rejected(index, invalid(error.field, error.detail))
    except Problem as problem:
        item.result = rejected(index, problem)
    return item


def rejected(index: int, problem: Problem) -> EventResult:
    return EventResult(index, "rejected", error=problem.to_body())


async def _mark_duplicates(session: AsyncSession, items: list[_Pending]) -> None:
    """Mark as `duplicate` the ids stored before, and link each id repeated in the list to its first item.

    An id stored before with another type or for another contact is a client's mistake rather than a
    retry, so that item is rejected with a 409 instead of being reported as a duplicate.
    """
    ids = list({item.event_id for item in items})
    known: dict[str, tuple[str, str, str | None]] = {}
    if ids:
        query = (
            select(TimelineEvent.id, TimelineEvent.contact_id, TimelineEvent.type, Contact.email_key)
            .outerjoin(Contact, col(Contact.id) == col(TimelineEvent.contact_id))
            .where(col(TimelineEvent.id).in_(ids))
        )
        known = {event_id: (contact_id, kind, email_key) for event_id, contact_id, kind, email_key in (await session.exec(query)).all()}

    firsts: dict[str, _Pending] = {}
    for item in items:
        if item.event_id in known:
            contact_id, kind, email_key = known[item.event_id]
            if _differs(item, contact_id, kind, email_key):
                log.warning("event.id_reused", event_id=item.event_id, contact_id=contact_id)
                item.result = _id_conflict(item, f"event {item.event_id} exists with another type or contact; give this event a new id")
            else:
                item.result = EventResult(item.index, "duplicate", item.event_id, contact_id)
        elif item.event_id in firsts:
            item.first = firsts[item.event_id]
        else:
            firsts[item.event_id] = item


def _mark_repeats(items: list[_Pending], contacts: dict[int, Contact]) -> None:
    """Settle each item that repeats the id of an earlier item, once the earlier item's contact is known.

    A repeat with the same type and contact is a `duplicate` of the earlier item. One with another
    type or contact is a new event under a reused id, so it is rejected with a 409, as it is when
    the earlier event was stored by another request.
    """
    for item in items:
        first = item.first
        assert first is not None
        contact = contacts.get(first.index)
        if contact is not None:
            same = not _differs(item, contact.id, first.incoming.type, contact.email_key)
        else:
            # The earlier item was rejected before its contact was found, so only the references
            # that the two items sent can be compared.
            same = _reference(item) == _reference(first)

        if not same:
            log.warning("event.id_reused_in_list", event_id=item.event_id, index=item.index, first_index=first.index)
            message = f"event {item.event_id} is already used by an earlier event of this batch with another type or contact; give this event a new id"
            item.result = _id_conflict(item, message)
        elif contact is not None:
            item.result = EventResult(item.index, "duplicate", item.event_id, contact.id)
        else:
            error = first.result.error if first.result is not None else None
            item.result = EventResult(item.index, "rejected", error=error)


def _reference(item: _Pending) -> tuple[str, str | None, str | None]:
    """Return the type of an item and the contact id or email match key it names."""
    return item.incoming.type, item.incoming.contact_id or None, item.email_key


def _id_conflict(item: _Pending, message: str) -> EventResult:
    return rejected(item.index, Conflict(message, errors=[field_error("id", message, "conflict")]))


def _differs(item: _Pending, contact_id: str, kind: str, email_key: str | None) -> bool:
    """Return whether an item names another type or contact than the earlier event of its id."""
    if item.incoming.type != kind:
        return True
    if item.incoming.contact_id:
        return item.incoming.contact_id != contact_id
    # An erased contact has no row left to compare with.
    return email_key is not None and item.email_key != email_key


async def _resolve_contacts(
    session: AsyncSession, items: list[_Pending], changes: ContactChanges, create: bool
) -> dict[int, Contact]:
    """Return the contact of each item by index, creating contacts for unknown addresses."""
    ids = list({item.incoming.contact_id for item in items if item.incoming.contact_id})
    by_id: dict[str, Contact] = {}
    if ids:
        by_id = {row.id: row for row in (await session.exec(select(Contact).where(col(Contact.id).in_(ids)))).all()}
    by_key = await find_by_keys(session, {item.email_key for item in items if item.email_key})

    found: dict[int, Contact] = {}
    for item in items:
        contact = by_id.get(item.incoming.contact_id or "") if item.incoming.contact_id else by_key.get(item.email_key or "")
        if contact is None and item.incoming.contact_id:
            item.result = rejected(item.index, NotFound(f"contact {item.incoming.contact_id} not found", contact_id=item.incoming.contact_id))
            continue
        if contact is None and not create:
            item.result = rejected(item.index, NotFound("no contact has this email", field="email"))
            continue
        if contact is None:
            contact = await _create_for_event(session, item, changes)
            by_key[contact.email_key] = contact
        found[item.index] = contact
    return found


async def _create_for_event(session: AsyncSession, item: _Pending, changes: ContactChanges) -> Contact:
    # Not checked at once: if another request creates the same address meanwhile, the commit fails
    # on the unique key and the caller stores the events again one by one, finding that contact.
    return await create_contact(session, item.email or "", changes, actor="event", check_now=False)


async def list_timeline(
    session: AsyncSession, contact_id: str, *, limit: int, before: tuple[datetime, str] | None
) -> list[TimelineEvent]:
    """Return a page of a contact's events, newest first by when they happened."""
    await get_contact(session, contact_id)
    query = select(TimelineEvent).where(TimelineEvent.contact_id == contact_id)
    if before is not None:
        occurred_at, event_id = before
        query = query.where(
            or_(
                col(TimelineEvent.occurred_at) < occurred_at,
                and_(col(TimelineEvent.occurred_at) == occurred_at, col(TimelineEvent.id) < event_id),
            )
        )
    query = query.order_by(col(TimelineEvent.occurred_at).desc(), col(TimelineEvent.id).desc())
    return list((await session.exec(query.limit(limit))).all())


def as_contract(event: RecordedEvent) -> topics.TimelineEvent:
    return topics.TimelineEvent(
        id=event.id,
        contact_id=event.contact_id,
        type=event.type,
        occurred_at=event.occurred_at,
        received_at=event.received_at,
        properties=event.properties,
    )
