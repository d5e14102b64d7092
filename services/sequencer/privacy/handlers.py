"""The consumer of contact.erased."""

from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from services.kit import clock
from services.kit.contracts import EventEnvelope
from services.kit.contracts import contacts as topics
from services.sequencer.privacy.service import erase_contact


async def on_contact_erased(session: AsyncSession, envelope: EventEnvelope, ctx: dict[str, Any]) -> None:
    payload = topics.ContactErased.model_validate(envelope.payload)
    await erase_contact(session, payload.contact_id, clock.now())
