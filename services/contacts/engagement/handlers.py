"""Consuming the sequencer's email engagement (sends, opens, clicks, bounces) onto the timeline."""

from typing import Any

from pydantic import ValidationError
from sqlmodel.ext.asyncio.session import AsyncSession

from services.contacts.changes import ContactChanges
from services.contacts.publishing import batch_changes, flush_changes
from services.contacts.timeline.service import EventIn, record_events
from services.kit.consumer import BATCH_CACHE
from services.kit.contracts import EventEnvelope
from services.kit.contracts.sequencer import EmailEngagement
from services.kit.logging import get_logger

log = get_logger(__name__)

# Key of the batch cache entry that collects a consumer batch's engagement events.
_BATCH_ENGAGEMENT = "engagement"


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

    batch = session.info.get(BATCH_CACHE)
    if batch is not None:
        # A batch stores its engagement together, in `record_batch_engagement`.
        batch.setdefault(_BATCH_ENGAGEMENT, []).append((engagement, incoming))
        return

    changes = ContactChanges()
    await _record(session, ctx, [(engagement, incoming)], changes)
    await flush_changes(session, ctx["outbox"], changes, ctx["settings"])


async def record_batch_engagement(session: AsyncSession, ctx: dict[str, Any]) -> None:
    """Store the engagement events of a consumer batch with one call, before its changes are flushed."""
    collected = session.info.get(BATCH_CACHE, {}).pop(_BATCH_ENGAGEMENT, [])
    changes = batch_changes(session)
    if collected and changes is not None:
        await _record(session, ctx, collected, changes)


async def _record(
    session: AsyncSession, ctx: dict[str, Any], items: list[tuple[EmailEngagement, EventIn]], changes: ContactChanges
) -> None:
    indexed = [(index, incoming) for index, (_, incoming) in enumerate(items)]
    results = await record_events(session, ctx["outbox"], indexed, changes, ctx["settings"], create_contacts=False)
    for result in results:
        if result.status == "rejected":
            engagement = items[result.index][0]
            log.warning("engagement.rejected", event_id=engagement.event_id, contact_id=engagement.contact_id, error=result.error)
