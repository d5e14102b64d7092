"""Keeping the contact's copy of its scores, which segments and reports read."""

from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from services.contacts.people.models import Contact
from services.kit.contracts import EventEnvelope
from services.kit.contracts.scoring import ScoreChanged


async def on_score_changed(session: AsyncSession, envelope: EventEnvelope, ctx: dict[str, Any]) -> None:
    """Store the newest score of a model; an older update arriving late is ignored."""
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
