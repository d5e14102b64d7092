"""Threshold definitions: saving (with an optional backfill), reading, deleting, listing firings."""

from dataclasses import dataclass

from sqlalchemy import delete, func
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.kit import clock
from services.kit.logging import get_logger
from services.kit.problems import Conflict, NotFound, invalid
from services.scoring.db import dialect_name
from services.scoring.jobs.models import ScoringJob
from services.scoring.jobs.service import BACKFILL, count, new_job
from services.scoring.rulesets.models import ScoreModel
from services.scoring.schemas import ThresholdIn
from services.scoring.scores.models import ContactScore
from services.scoring.thresholds.models import ScoreThreshold, ThresholdFiring, ThresholdState
from services.scoring.thresholds.triggers import threshold_trigger_key

DEFINITION_FIELDS = ("model", "min_score", "action", "rearm", "apply_to_existing", "description")

log = get_logger(__name__)


@dataclass(frozen=True)
class ThresholdSaveResult:
    threshold: ScoreThreshold
    created: bool
    backfill: ScoringJob | None


async def get_threshold(session: AsyncSession, name: str) -> ScoreThreshold:
    threshold = await session.get(ScoreThreshold, name)
    if threshold is None:
        raise NotFound(f"threshold {name!r} not found")
    return threshold


async def put_threshold(session: AsyncSession, name: str, body: ThresholdIn) -> ThresholdSaveResult:
    """Create or change a threshold; a save that changes nothing does nothing. Commits.

    A changed definition gets the next revision. With `apply_to_existing`, a backfill job is
    created for it (the caller enqueues it). Moving a threshold to another model clears its
    per-contact state, because it is then a new trigger.
    """
    if await session.get(ScoreModel, body.model) is None:
        raise invalid("model", f"score model {body.model!r} does not exist; create it with PUT /v1/scoring/models/{body.model}")
    now = clock.now()
    values = body.model_dump(include=set(DEFINITION_FIELDS))

    threshold = await _locked(session, name)
    created = threshold is None
    if threshold is None:
        threshold = ScoreThreshold(name=name, created_at=now, updated_at=now, **values)
    else:
        if all(getattr(threshold, key) == value for key, value in values.items()):
            return ThresholdSaveResult(threshold, created=False, backfill=None)
        if threshold.model != body.model:
            await _clear_states(session, name)
        for key, value in values.items():
            setattr(threshold, key, value)
        threshold.revision += 1
        threshold.updated_at = now
    session.add(threshold)

    backfill = None
    if threshold.apply_to_existing:
        total = await count(session, select(ContactScore.contact_id).where(ContactScore.model == threshold.model))
        backfill = new_job(BACKFILL, threshold.model, version=threshold.revision, total=total, threshold=name)
        session.add(backfill)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise Conflict(f"threshold {name!r} was created at the same time; send the request again") from None
    log.info("threshold.saved", threshold=name, revision=threshold.revision, backfill=backfill.id if backfill else None)
    return ThresholdSaveResult(threshold, created=created, backfill=backfill)


async def delete_threshold(session: AsyncSession, name: str) -> None:
    """Delete a threshold with its per-contact state and firings. Commits."""
    threshold = await get_threshold(session, name)
    await _clear_states(session, name)
    statement = delete(ThresholdFiring).where(col(ThresholdFiring.trigger) == threshold_trigger_key(name))
    await session.exec(statement)  # type: ignore[call-overload]
    await session.delete(threshold)
    await session.commit()
    log.info("threshold.deleted", threshold=name)


async def list_thresholds(session: AsyncSession, *, after: str | None, limit: int) -> list[ScoreThreshold]:
    query = select(ScoreThreshold).order_by(ScoreThreshold.name).limit(limit)
    if after is not None:
        query = query.where(ScoreThreshold.name > after)
    return list((await session.exec(query)).all())


async def firing_counts(session: AsyncSession, names: list[str]) -> dict[str, int]:
    keys = {threshold_trigger_key(name): name for name in names}
    if not keys:
        return {}
    query = (
        select(ThresholdFiring.trigger, func.count())
        .where(col(ThresholdFiring.trigger).in_(list(keys)))
        .group_by(ThresholdFiring.trigger)
    )
    counts = {name: 0 for name in names}
    for trigger, number in (await session.exec(query)).all():
        counts[keys[trigger]] = int(number)
    return counts


async def list_firings(
    session: AsyncSession, trigger: str, *, contact_id: str | None, after: int | None, limit: int
) -> list[ThresholdFiring]:
    query = select(ThresholdFiring).where(ThresholdFiring.trigger == trigger).order_by(ThresholdFiring.id).limit(limit)
    if contact_id is not None:
        query = query.where(ThresholdFiring.contact_id == contact_id)
    if after is not None:
        query = query.where(col(ThresholdFiring.id) > after)
    return list((await session.exec(query)).all())


async def _locked(session: AsyncSession, name: str) -> ScoreThreshold | None:
    query = select(ScoreThreshold).where(ScoreThreshold.name == name)
    if dialect_name(session) == "postgresql":
        query = query.with_for_update()
    return (await session.exec(query)).first()


async def _clear_states(session: AsyncSession, name: str) -> None:
    statement = delete(ThresholdState).where(col(ThresholdState.trigger) == threshold_trigger_key(name))
    await session.exec(statement)  # type: ignore[call-overload]
