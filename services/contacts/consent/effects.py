"""The consent effects of timeline events: unsubscribes, bounces and complaints.

| event type         | properties                        | effect                                              |
| ------------------ | --------------------------------- | --------------------------------------------------- |
| `unsubscribed`     | `topic?`, `source?`               | that topic (or overall) becomes unsubscribed        |
| `email_complained` |                                   | overall becomes complained: no more sending         |
| `email_bounced`    | `bounce_class: hard`              | overall becomes bounced (reason hard_bounce)        |
| `email_bounced`    | `bounce_class: soft`              | bounced (reason repeated_soft) once `soft_bounce_limit` soft bounces fall within `soft_bounce_window_days` |
| `email_bounced`    | `bounce_class: block`             | none: a blocklisted sending IP is no evidence about the address |

A bounce is stale, and changes nothing, when the same message (`properties.message_id`) was
delivered, opened or clicked after it: the address demonstrably worked later. Any change older than
the one that set the current status is stale too (see consent/service.py).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.contacts.changes import ContactChanges
from services.contacts.consent.service import (
    BOUNCED,
    COMPLAINED,
    REASON_COMPLAINT,
    REASON_HARD_BOUNCE,
    REASON_REPEATED_SOFT,
    SOURCE_COMPLAINT,
    SOURCE_HARD_BOUNCE,
    SOURCE_PROVIDER,
    SOURCE_SOFT_BOUNCE,
    SOURCE_UNSUBSCRIBE_LINK,
    UNSUBSCRIBED,
    ConsentRequest,
    apply_platform_change,
)
from services.contacts.settings import ContactsSettings
from services.contacts.timeline.models import RecordedEvent, TimelineEvent
from services.kit.logging import get_logger
from services.kit.outbox import Outbox

log = get_logger(__name__)

UNSUBSCRIBED_EVENT = "unsubscribed"
COMPLAINED_EVENT = "email_complained"
BOUNCED_EVENT = "email_bounced"
CONSENT_EVENT_TYPES = frozenset({UNSUBSCRIBED_EVENT, COMPLAINED_EVENT, BOUNCED_EVENT})
BOUNCE_CLASSES = ("hard", "soft", "block")
UNSUBSCRIBE_EVENT_SOURCES = (SOURCE_UNSUBSCRIBE_LINK, SOURCE_PROVIDER)
# Events that prove the address received the message.
_PROOF_OF_DELIVERY = ("email_delivered", "email_opened", "email_clicked")


async def apply_event_effects(
    session: AsyncSession,
    outbox: Outbox,
    event: RecordedEvent,
    changes: ContactChanges,
    settings: ContactsSettings,
) -> None:
    """Apply the consent effect of one stored event, if its type has one."""
    if event.type == UNSUBSCRIBED_EVENT:
        source = event.properties.get("source") or SOURCE_UNSUBSCRIBE_LINK
        request = ConsentRequest(
            UNSUBSCRIBED, source, event.occurred_at, topic=event.properties.get("topic"), event_id=event.id
        )
    elif event.type == COMPLAINED_EVENT:
        request = ConsentRequest(COMPLAINED, SOURCE_COMPLAINT, event.occurred_at, reason=REASON_COMPLAINT, event_id=event.id)
    elif event.type == BOUNCED_EVENT:
        request_or_none = await _bounce_request(session, event, settings)
        if request_or_none is None:
            return
        request = request_or_none
    else:
        return

    await apply_platform_change(session, outbox, event.contact_id, request, changes, default_status=settings.default_consent)


async def _bounce_request(session: AsyncSession, event: RecordedEvent, settings: ContactsSettings) -> ConsentRequest | None:
    bounce_class = event.properties.get("bounce_class")
    if bounce_class == "block":
        log.warning("consent.block_bounce", contact_id=event.contact_id, event_id=event.id, message_id=event.message_id)
        return None

    if await _delivered_later(session, event):
        log.info("consent.stale_bounce_ignored", contact_id=event.contact_id, event_id=event.id, message_id=event.message_id)
        return None

    if bounce_class == "hard":
        return ConsentRequest(BOUNCED, SOURCE_HARD_BOUNCE, event.occurred_at, reason=REASON_HARD_BOUNCE, event_id=event.id)

    reached_at = await _soft_limit_reached_at(session, event, settings)
    if reached_at is None:
        return None

    return ConsentRequest(BOUNCED, SOURCE_SOFT_BOUNCE, reached_at, reason=REASON_REPEATED_SOFT, event_id=event.id)


async def _delivered_later(session: AsyncSession, event: RecordedEvent) -> bool:
    if event.message_id is None:
        return False

    query = select(TimelineEvent.id).where(
        TimelineEvent.contact_id == event.contact_id,
        TimelineEvent.message_id == event.message_id,
        col(TimelineEvent.type).in_(_PROOF_OF_DELIVERY),
        TimelineEvent.occurred_at > event.occurred_at,
    )
    return (await session.exec(query.limit(1))).first() is not None


async def soft_bounce_times(session: AsyncSession, contact_id: str, start: datetime, end: datetime) -> list[datetime]:
    """Return when the contact's soft bounces between `start` and `end` (both included) happened, in order."""
    query = select(TimelineEvent).where(
        TimelineEvent.contact_id == contact_id,
        TimelineEvent.type == BOUNCED_EVENT,
        TimelineEvent.occurred_at >= start,
        TimelineEvent.occurred_at <= end,
    )
    rows = (await session.exec(query.order_by(col(TimelineEvent.occurred_at)))).all()
    return [row.occurred_at for row in rows if row.properties.get("bounce_class") == "soft"]


async def _soft_limit_reached_at(session: AsyncSession, event: RecordedEvent, settings: ContactsSettings) -> datetime | None:
    """Return when the soft-bounce limit was first reached in a window holding `event`, or None.

    Events may arrive out of order, so every window that contains this bounce is checked, not only
    the one that ends at it.
    """
    window = timedelta(days=settings.soft_bounce_window_days)
    times = await soft_bounce_times(session, event.contact_id, event.occurred_at - window, event.occurred_at + window)
    limit = settings.soft_bounce_limit
    for index in range(limit - 1, len(times)):
        first, last = times[index - limit + 1], times[index]
        if last - first <= window and first <= event.occurred_at <= last:
            return last

    return None
