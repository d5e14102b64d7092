"""Turning email events from the contacts timeline into message events of our sent messages.

The gateway's tracking routes and provider webhooks record `email_delivered`, `email_opened`,
`email_clicked`, `email_bounced`, `email_complained` and `unsubscribed` events on the contact's
timeline, with our Message-ID in `properties.message_id`; `email_dropped` and `email_deferred` are
kept too. Properties read here: `machine` (an open the gateway or provider found to be automated),
`provider_machine_open` or `machine_open` (a provider's machine-open flag), `bot`
(a click known to be automated), `user_agent`, `ip` and `url` (for the human/machine classifier),
and `bounce_type` (`hard`, `soft` or `block`; a bounce without it counts as hard).
"""

from dataclasses import dataclass

from sqlmodel.ext.asyncio.session import AsyncSession

from services.kit.contracts.contacts import TimelineEvent
from services.kit.logging import get_logger
from services.sequencer.engagement.recording import find_message, record_message_event
from services.sequencer.engagement.status import DerivedStatus, EventFact, derive_status
from services.sequencer.engagement.recording import message_events
from services.sequencer.sending.models import SentMessage

EMAIL_EVENT_TYPES = {
    "email_delivered": "delivered",
    "email_opened": "opened",
    "email_clicked": "clicked",
    "email_bounced": "bounced",
    "email_complained": "complained",
    "email_dropped": "dropped",
    "email_deferred": "deferred",
    "unsubscribed": "unsubscribed",
}

log = get_logger(__name__)


@dataclass(frozen=True)
class RecordedEngagement:
    message: SentMessage | None
    kind: str
    new: bool
    status: DerivedStatus | None


def is_hard_bounce(event: TimelineEvent) -> bool:
    kind = event.properties.get("bounce_type")
    return kind is None or str(kind).lower() in {"hard", "bounced_hard", "permanent"}


async def record_email_event(session: AsyncSession, event: TimelineEvent) -> RecordedEngagement | None:
    """Store an email event against the message it names; None for other event types."""
    kind = EMAIL_EVENT_TYPES.get(event.type)
    if kind is None:
        return None

    message_id = event.properties.get("message_id")
    message = await find_message(session, message_id, lock=True) if isinstance(message_id, str) and message_id else None
    if message is None:
        log.info("engagement.unknown_message", event_id=event.id, type=event.type, message_id=message_id)
        return RecordedEngagement(None, kind, False, None)

    new = await record_message_event(
        session,
        message,
        event_id=event.id,
        kind=kind,
        occurred_at=event.occurred_at,
        properties=dict(event.properties),
    )
    events = await message_events(session, message.message_id)
    status = derive_status(message.state, [EventFact(item.type, item.occurred_at, item.verdict) for item in events])
    return RecordedEngagement(message, kind, new, status)
