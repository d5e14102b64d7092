"""Consumers of the scoring service's events: the contact's copy of its scores, and MQL promotion."""

from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.contacts.changes import ContactChanges
from services.contacts.people.models import Contact
from services.contacts.publishing import batch_changes, flush_changes
from services.contacts.stages.machine import Stage
from services.contacts.stages.models import StageChange
from services.contacts.stages.service import change_stage
from services.kit.consumer import BATCH_CACHE
from services.kit.contracts import EventEnvelope, contact_id_of
from services.kit.contracts.scoring import MqlReached, ScoreChanged
from services.kit.logging import get_logger

log = get_logger(__name__)

SCORING_ACTOR = "scoring"
# Scoring promotes only from these stages; a contact at sql or later is never demoted.
_PROMOTABLE = (Stage.SUBSCRIBER.value, Stage.LEAD.value)


async def on_score_changed(session: AsyncSession, envelope: EventEnvelope, ctx: dict[str, Any]) -> None:
    """Store the newest score of a model (an older update arriving late is ignored) and re-segment."""
    change = ScoreChanged.model_validate(envelope.payload)
    contact = await session.get(Contact, change.contact_id)
    if contact is None:
        return

    current = contact.scores.get(change.model)
    if current is not None and current.get("at", "") > change.at.isoformat():
        return
    contact.scores = {
        **contact.scores,
        change.model: {"total": change.total, "fit": change.fit, "engagement": change.engagement, "at": change.at.isoformat()},
    }
    session.add(contact)

    batched = batch_changes(session)
    if batched is not None:
        # Segments are brought up to date once for the whole batch, in `flush_batch_changes`.
        batched.score(contact.id)
        return
    changes = ContactChanges()
    changes.score(contact.id)
    await flush_changes(session, ctx["outbox"], changes, ctx["settings"])


async def prefetch_contacts(session: AsyncSession, envelopes: list[EventEnvelope], ctx: dict[str, Any]) -> None:
    """Load a batch's contacts with one statement, so the handlers find them in the session."""
    ids = sorted({contact_id for envelope in envelopes if (contact_id := contact_id_of(envelope))})
    if ids:
        # Kept in the batch cache because the session references unchanged objects only weakly.
        contacts = (await session.exec(select(Contact).where(col(Contact.id).in_(ids)))).all()
        session.info[BATCH_CACHE]["contacts"] = list(contacts)


async def on_mql_reached(session: AsyncSession, envelope: EventEnvelope, ctx: dict[str, Any]) -> None:
    """Promote a subscriber or lead to MQL once, with the score as the reason and "scoring" as the actor.

    A contact already at mql or beyond stays where it is. A contact that scoring promoted before
    and sales sent back to lead is not promoted again automatically: re-qualifying it is a person's
    decision, so scoring cannot undo a sales rejection.
    """
    reached = MqlReached.model_validate(envelope.payload)
    contact = await session.get(Contact, reached.contact_id)
    if contact is None or contact.stage not in _PROMOTABLE:
        return

    if await _promoted_before(session, contact.id):
        log.info("stage.mql_promotion_skipped", contact_id=contact.id, reason="promoted to mql by scoring before")
        return

    reason = f"score {reached.score:g} reached the MQL threshold {reached.threshold:g} of model {reached.model}"
    changes = ContactChanges()
    await change_stage(session, ctx["outbox"], contact, Stage.MQL, changes, reason=reason, actor=SCORING_ACTOR)
    await flush_changes(session, ctx["outbox"], changes, ctx["settings"])


async def _promoted_before(session: AsyncSession, contact_id: str) -> bool:
    query = select(StageChange.id).where(
        StageChange.contact_id == contact_id, StageChange.to_stage == Stage.MQL.value, StageChange.actor == SCORING_ACTOR
    )
    return (await session.exec(query.limit(1))).first() is not None
