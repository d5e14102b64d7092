"""Storing message events once per event id, classifying hits, and keeping each message's status."""

from datetime import datetime
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.kit import clock
from services.kit.logging import get_logger
from services.sequencer.dbutil import insert_ignoring_conflict, locked
from services.sequencer.engagement.classifier import TrackingHit, classify_hits
from services.sequencer.engagement.models import MessageEvent
from services.sequencer.engagement.status import DerivedStatus, EventFact, derive_status
from services.sequencer.sending.models import SentMessage

HIT_KINDS = {"opened": "open", "clicked": "click"}
# Properties the gateway sets on a hit it has already found to be automated.
_GATEWAY_FLAGS = {"opened": "machine", "clicked": "bot"}

log = get_logger(__name__)


def normalise_message_id(value: str) -> str:
    """Return a Message-ID in its stored form `<id@domain>`, accepting it without the angle brackets."""
    value = value.strip()
    if "@" in value and not value.startswith("<"):
        return f"<{value}>"
    return value


async def find_message(session: AsyncSession, message_id: str, *, lock: bool = False) -> SentMessage | None:
    query = select(SentMessage).where(SentMessage.message_id == normalise_message_id(message_id))
    if lock:
        query = locked(query, session)
    return (await session.exec(query)).first()


async def message_events(session: AsyncSession, message_id: str) -> list[MessageEvent]:
    query = (
        select(MessageEvent)
        .where(MessageEvent.message_id == message_id)
        .order_by(col(MessageEvent.occurred_at), col(MessageEvent.id))
    )
    return list((await session.exec(query)).all())


async def record_message_event(
    session: AsyncSession,
    message: SentMessage,
    *,
    event_id: str,
    kind: str,
    occurred_at: datetime,
    properties: dict[str, Any],
) -> bool:
    """Store one event of a message unless its id was stored before; return whether it was new.

    The caller must hold the message row (see `find_message(lock=True)`), so two events of one
    message update its status one after the other.
    """
    inserted = await insert_ignoring_conflict(
        session,
        MessageEvent,
        {
            "event_id": event_id,
            "message_id": message.message_id,
            "contact_id": message.contact_id,
            "type": kind,
            "occurred_at": occurred_at,
            "received_at": clock.now(),
            "verdict": None,
            "reasons": [],
            "properties": properties,
        },
    )
    if inserted is None:
        return False

    events = await message_events(session, message.message_id)
    if kind in HIT_KINDS:
        _classify(message, events)
    apply_status(message, derive_status(message.state, [EventFact(e.type, e.occurred_at, e.verdict) for e in events]))
    return True


def _classify(message: SentMessage, events: list[MessageEvent]) -> None:
    """Classify every open and click of the message again, because a burst shows only across hits."""
    hits = [event for event in events if event.type in HIT_KINDS]
    classified = classify_hits(
        [_as_hit(event) for event in hits],
        delivered_at=message.delivered_at or message.sent_at,
    )
    for event, result in zip(hits, classified, strict=True):
        reasons = list(result.reasons)
        if "user_agent" not in event.properties:
            # Provider events often carry no user agent at all; only a hit that sent an empty one
            # counts as having none.
            reasons = [reason for reason in reasons if reason != "no_user_agent"]
        if event.properties.get(_GATEWAY_FLAGS[event.type]) is True:
            reasons.append(f"flagged_{_GATEWAY_FLAGS[event.type]}")
        verdict = "human"
        if reasons:
            verdict = "machine" if event.type == "opened" else "bot"
        if (event.verdict, event.reasons) != (verdict, reasons):
            event.verdict = verdict
            event.reasons = reasons


def _as_hit(event: MessageEvent) -> TrackingHit:
    properties = event.properties
    user_agent = properties.get("user_agent")
    ip = properties.get("ip")
    url = properties.get("url")
    return TrackingHit(
        kind=HIT_KINDS[event.type],  # type: ignore[arg-type]
        occurred_at=event.occurred_at,
        user_agent=user_agent if isinstance(user_agent, str) else None,
        ip=ip if isinstance(ip, str) else None,
        url=url if isinstance(url, str) else None,
        provider_machine_open=event.type == "opened"
        and (properties.get("provider_machine_open") is True or properties.get("machine_open") is True),
    )


def apply_status(message: SentMessage, derived: DerivedStatus) -> None:
    message.status = derived.status
    message.delivered_at = derived.delivered_at
    message.opened_at = derived.opened_at
    message.clicked_at = derived.clicked_at
    message.bounced_at = derived.bounced_at
    message.complained_at = derived.complained_at
    message.unsubscribed_at = derived.unsubscribed_at
    message.updated_at = clock.now()


async def refresh_status(session: AsyncSession, message: SentMessage) -> DerivedStatus:
    """Derive the message's status again after its send state changed."""
    events = await message_events(session, message.message_id)
    derived = derive_status(message.state, [EventFact(e.type, e.occurred_at, e.verdict) for e in events])
    apply_status(message, derived)
    return derived
