"""Backfilling a threshold created with `apply_to_existing` over contacts already scored by its model."""

from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from services.kit import clock
from services.scoring.history.service import lock_contacts
from services.scoring.jobs.models import ScoringJob
from services.scoring.jobs.service import SUPERSEDED, JobStopped
from services.scoring.rulesets.service import get_model, model_as_active
from services.scoring.scores.service import current_score, load_books
from services.scoring.thresholds.models import ScoreThreshold
from services.scoring.thresholds.triggers import backfill_previous, evaluate, named_trigger


async def backfill_chunk(session: AsyncSession, ctx: dict[str, Any], job: ScoringJob, contact_ids: list[str]) -> None:
    """Fire the threshold for each contact of the chunk at or above it that it has not fired for."""
    threshold = await session.get(ScoreThreshold, job.threshold or "")
    if threshold is None or threshold.revision != job.version or threshold.model != job.model:
        raise JobStopped(SUPERSEDED, f"threshold {job.threshold!r} was changed or deleted; a newer backfill replaces this one")
    model = await model_as_active(session, await get_model(session, job.model))
    trigger = named_trigger(model, threshold)
    now = clock.now()

    await lock_contacts(session, contact_ids)
    books = await load_books(session, contact_ids, [model.name])
    for contact_id in contact_ids:
        book = books[contact_id]
        state = book.states.get(trigger.key)
        await evaluate(
            session,
            ctx["outbox"],
            contact_id=contact_id,
            trigger=trigger,
            state=state,
            previous=backfill_previous(state),
            current=current_score(model, book, now).total,
            source="backfill",
            now=now,
        )
    await session.flush()
