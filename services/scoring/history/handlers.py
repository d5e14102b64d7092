"""Consuming the contacts service's events into the scoring history."""

from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from services.kit import clock
from services.kit.contracts import EventEnvelope
from services.kit.contracts import contacts as contact_topics
from services.kit.contracts import scoring as scoring_topics
from services.scoring.history.models import ScoredEvent
from services.scoring.scores.models import ContactScore

DEFAULT_MODEL = "default"


async def on_event_recorded(session: AsyncSession, envelope: EventEnvelope, ctx: dict[str, Any]) -> None:
    """Keep the event for rescoring and make sure the contact has a score row."""
    event = contact_topics.EventRecorded.model_validate(envelope.payload).event
    if await session.get(ScoredEvent, event.id) is None:
        session.add(
            ScoredEvent(
                id=event.id,
                contact_id=event.contact_id,
                type=event.type,
                occurred_at=event.occurred_at,
                properties=event.properties,
            )
        )

    score = await session.get(ContactScore, (event.contact_id, DEFAULT_MODEL))
    if score is None:
        score = ContactScore(contact_id=event.contact_id, model=DEFAULT_MODEL, updated_at=clock.now())
        session.add(score)
        ctx["outbox"].publish(
            session,
            scoring_topics.SCORE_CHANGED,
            scoring_topics.ScoreChanged(
                contact_id=score.contact_id, model=score.model, total=score.total, fit=score.fit,
                engagement=score.engagement, at=score.updated_at,
            ),
        )
