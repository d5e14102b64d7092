"""Recording behaviour events on a contact's timeline, once per event id."""

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, model_validator
from sqlalchemy.exc import IntegrityError
from sqlalchemy import and_, or_
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.contacts.people.service import find_or_create_by_email, get_contact
from services.contacts.timeline.models import TimelineEvent
from services.kit import clock
from services.kit.contracts import contacts as topics
from services.kit.outbox import Outbox


class EventIn(BaseModel):
    """A behaviour event as callers send it."""

    id: str | None = Field(default=None, min_length=1, max_length=128)
    contact_id: str | None = Field(default=None, max_length=32)
    email: str | None = Field(default=None, max_length=320)
    type: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_.:-]*$")
    occurred_at: datetime | None = None
    properties: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _identify_contact(self) -> "EventIn":
        if not self.contact_id and not self.email:
            raise ValueError("either contact_id or email is required")
        if self.occurred_at is not None and self.occurred_at.tzinfo is None:
            raise ValueError("occurred_at needs a UTC offset, e.g. 2024-05-01T10:00:00Z")
        return self


async def record_event(session: AsyncSession, outbox: Outbox, incoming: EventIn) -> tuple[TimelineEvent, bool]:
    """Store the event and publish it, or return the stored one when its id was seen before."""
    event_id = incoming.id or uuid.uuid4().hex
    existing = await session.get(TimelineEvent, event_id)
    if existing is not None:
        return existing, False

    if incoming.contact_id:
        contact = await get_contact(session, incoming.contact_id)
    else:
        contact, _ = await find_or_create_by_email(session, incoming.email or "")

    now = clock.now()
    event = TimelineEvent(
        id=event_id,
        contact_id=contact.id,
        type=incoming.type,
        occurred_at=incoming.occurred_at or now,
        received_at=now,
        properties=incoming.properties,
    )
    session.add(event)
    outbox.publish(session, topics.EVENT_RECORDED, topics.EventRecorded(event=_as_contract(event)))
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        stored = await session.get(TimelineEvent, event_id)
        if stored is None:
            raise
        return stored, False
    return event, True


async def list_timeline(
    session: AsyncSession, contact_id: str, *, limit: int, after: tuple[datetime, str] | None
) -> list[TimelineEvent]:
    """Return a page of a contact's events, newest first by when they happened."""
    await get_contact(session, contact_id)
    query = select(TimelineEvent).where(TimelineEvent.contact_id == contact_id)
    if after is not None:
        occurred_at, event_id = after
        query = query.where(
            or_(
                TimelineEvent.occurred_at < occurred_at,
                and_(TimelineEvent.occurred_at == occurred_at, TimelineEvent.id < event_id),  # type: ignore[arg-type]
            )
        )
    query = query.order_by(TimelineEvent.occurred_at.desc(), TimelineEvent.id.desc())  # type: ignore[attr-defined]
    return list((await session.exec(query.limit(limit))).all())


def _as_contract(event: TimelineEvent) -> topics.TimelineEvent:
    return topics.TimelineEvent(
        id=event.id,
        contact_id=event.contact_id,
        type=event.type,
        occurred_at=event.occurred_at,
        received_at=event.received_at,
        properties=event.properties,
    )
