"""The API view of a contact's consent and of the send-time check."""

from datetime import datetime

from pydantic import BaseModel, Field
from sqlmodel.ext.asyncio.session import AsyncSession

from services.contacts.consent.service import consent_history, consent_summary, load_states
from services.contacts.people.schemas import ConsentView


class ConsentChangeOut(BaseModel):
    topic: str | None
    from_status: str | None
    to_status: str
    source: str
    reason: str | None
    evidence: str | None
    occurred_at: datetime
    recorded_at: datetime


class ConsentOut(BaseModel):
    contact_id: str
    consent: ConsentView
    history: list[ConsentChangeOut]


class SendabilityOut(BaseModel):
    contact_id: str
    email: str
    timezone: str | None
    sendable: bool
    status: str
    topic: str | None
    topic_status: str | None
    reason: str | None = Field(
        description="Why not: unsubscribed, hard_bounce, complaint, repeated_soft or topic_unsubscribed"
    )


class SendabilityBatchOut(BaseModel):
    contacts: list[SendabilityOut]
    missing: list[str] = Field(description="Ids of contacts that do not exist (never created, or erased)")


async def consent_out(session: AsyncSession, contact_id: str, default_consent: str) -> ConsentOut:
    states = await load_states(session, contact_id)
    history = [
        ConsentChangeOut(
            topic=change.topic or None,
            from_status=change.from_status,
            to_status=change.to_status,
            source=change.source,
            reason=change.reason,
            evidence=change.evidence,
            occurred_at=change.occurred_at,
            recorded_at=change.recorded_at,
        )
        for change in await consent_history(session, contact_id)
    ]
    summary = consent_summary(states.values(), default_consent)
    return ConsentOut(contact_id=contact_id, consent=ConsentView(**summary), history=history)
