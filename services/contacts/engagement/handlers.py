"""Consuming the sequencer's email engagement (sends, opens, clicks, bounces) onto the timeline."""

from typing import Any

from pydantic import ValidationError
from sqlmodel.ext.asyncio.session import AsyncSession

from services.contacts.changes import ContactChanges
from services.contacts.publishing import flush_changes
from services.contacts.timeline.service import EventIn, record_events
from services.kit.contracts import EventEnvelope
from services.kit.contracts.sequencer import EmailEngagement
from services.kit.logging import get_logger

log = get_logger(__name__)


async def on_email_engagement(session: AsyncSession, envelope: EventEnvelope, ctx: dict[str, Any]) -> None:
    """Record the engagement as a timeline event with the sequencer's event id, applying its consent effect.

    An event for a contact that no longer exists (erased) or with invalid properties is logged and
    dropped: retrying cannot make it valid.
    """
    engagement = EmailEngagement.model_validate(envelope.payload)
    try:
        incoming = EventIn(
            id=engagement.event_id,
            contact_id=engagement.contact_id,
            type=engagement.type,
            occurred_at=engagement.occurred_at,
            properties=engagement.properties,
        )
    except ValidationError as error:
        log.warning("engagement.invalid", event_id=engagement.event_id, error=str(error)[:500])
        return

    changes = ContactChanges()
    [result] = await record_events(session, ctx["outbox"], [(0, incoming)], changes, ctx["settings"], create_contacts=False)
    if result.status == "rejected":
        log.warning("engagement.rejected", event_id=engagement.event_id, contact_id=engagement.contact_id, error=result.error)
        return

    await flush_changes(session, ctx["outbox"], changes, ctx["settings"])
