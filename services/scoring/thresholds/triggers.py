"""Edge-triggered score triggers: each model's MQL threshold and the named thresholds on it.

A trigger fires when a contact's score crosses it upwards, once per contact unless it re-arms, as
`rules.cross_threshold` decides. The state per contact and trigger is stored, so the decision
does not depend on which worker sees the change. Firing records a `threshold_firing` row and
publishes the action's event in the same transaction. Nothing here writes a threshold definition.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.kit.contracts import scoring as topics
from services.kit.logging import get_logger
from services.kit.outbox import Outbox
from services.scoring.rules import cross_threshold
from services.scoring.rulesets.service import ActiveModel
from services.scoring.thresholds.models import ScoreThreshold, ThresholdFiring, ThresholdState

MQL_ACTION = "mql"
NOTIFY_SALES_ACTION = "notify_sales"
ACTIONS = (NOTIFY_SALES_ACTION, MQL_ACTION)

log = get_logger(__name__)


@dataclass(frozen=True)
class Trigger:
    """One `score >= threshold` trigger: a model's MQL threshold (`name` None) or a named threshold."""

    key: str
    model: str
    version: int
    threshold: float
    action: str
    rearm: bool
    demote: bool
    name: str | None = None


def mql_trigger_key(model: str) -> str:
    return f"mql:{model}"


def threshold_trigger_key(name: str) -> str:
    return f"threshold:{name}"


def mql_trigger(model: ActiveModel) -> Trigger:
    return Trigger(
        key=mql_trigger_key(model.name),
        model=model.name,
        version=model.version,
        threshold=model.mql_threshold,
        action=MQL_ACTION,
        rearm=False,
        demote=model.demote_below_threshold,
    )


def named_trigger(model: ActiveModel, threshold: ScoreThreshold) -> Trigger:
    return Trigger(
        key=threshold_trigger_key(threshold.name),
        model=model.name,
        version=model.version,
        threshold=threshold.min_score,
        action=threshold.action,
        rearm=threshold.rearm,
        demote=False,
        name=threshold.name,
    )


def triggers_for(model: ActiveModel, thresholds: Iterable[ScoreThreshold]) -> list[Trigger]:
    return [mql_trigger(model), *(named_trigger(model, threshold) for threshold in thresholds)]


async def thresholds_by_model(session: AsyncSession, models: Sequence[str]) -> dict[str, list[ScoreThreshold]]:
    """Return the named thresholds of each model, in name order."""
    found: dict[str, list[ScoreThreshold]] = {model: [] for model in models}
    if not models:
        return found
    query = select(ScoreThreshold).where(col(ScoreThreshold.model).in_(list(models))).order_by(ScoreThreshold.name)
    for threshold in (await session.exec(query)).all():
        found[threshold.model].append(threshold)
    return found


async def evaluate(
    session: AsyncSession,
    outbox: Outbox,
    *,
    contact_id: str,
    trigger: Trigger,
    state: ThresholdState | None,
    previous: float | None,
    current: float,
    source: str,
    now: datetime,
) -> ThresholdState | None:
    """Apply one score change to one trigger; return the contact's state for it (None when there is none).

    `previous` is the score just before the change at the same instant, or None when it is
    unknown (a backfill), in which case a score at or above the threshold counts as a crossing.
    """
    already_fired = state.fired if state is not None else False
    if trigger.demote and already_fired and current < trigger.threshold:
        _demote(outbox, session, contact_id, trigger, current, now)
        already_fired = False

    crossing = cross_threshold(
        previous=previous, new=current, threshold=trigger.threshold, already_fired=already_fired, rearm=trigger.rearm
    )
    if crossing.fire:
        _fire(outbox, session, contact_id, trigger, current, source, now)

    is_above = current >= trigger.threshold
    if state is None and not crossing.fired and not is_above:
        return None
    if state is None:
        state = ThresholdState(contact_id=contact_id, trigger=trigger.key, updated_at=now)
    state.fired = crossing.fired
    state.above = is_above
    state.last_score = current
    state.fire_count += 1 if crossing.fire else 0
    state.updated_at = now
    session.add(state)
    return state


def backfill_previous(state: ThresholdState | None) -> float | None:
    """Return the `previous` score a backfill passes for a contact.

    A contact for which the trigger never fired counts as newly found at or above it (None), so
    the backfill fires for it even when a live event observed it above first. Once fired, the last
    observed score decides, which keeps running a backfill again from firing twice.
    """
    if state is None or not state.fired:
        return None
    return state.last_score


def _fire(
    outbox: Outbox, session: AsyncSession, contact_id: str, trigger: Trigger, score: float, source: str, now: datetime
) -> None:
    session.add(
        ThresholdFiring(
            trigger=trigger.key,
            model=trigger.model,
            contact_id=contact_id,
            action=trigger.action,
            score=score,
            threshold=trigger.threshold,
            source=source,
            fired_at=now,
        )
    )
    if trigger.name is not None:
        outbox.publish(
            session,
            topics.THRESHOLD_CROSSED,
            topics.ThresholdCrossed(
                threshold=trigger.name,
                model=trigger.model,
                contact_id=contact_id,
                action=trigger.action,
                score=score,
                min_score=trigger.threshold,
                source=source,
                at=now,
            ),
        )
    if trigger.action == MQL_ACTION:
        outbox.publish(
            session,
            topics.MQL_REACHED,
            topics.MqlReached(
                contact_id=contact_id,
                model=trigger.model,
                score=score,
                threshold=trigger.threshold,
                at=now,
                version=trigger.version,
                trigger=trigger.key,
            ),
        )
    log.info("threshold.fired", trigger=trigger.key, contact_id=contact_id, action=trigger.action, source=source)


def _demote(outbox: Outbox, session: AsyncSession, contact_id: str, trigger: Trigger, score: float, now: datetime) -> None:
    outbox.publish(
        session,
        topics.MQL_LOST,
        topics.MqlLost(contact_id=contact_id, model=trigger.model, score=score, threshold=trigger.threshold, at=now),
    )
    log.info("threshold.mql_lost", trigger=trigger.key, contact_id=contact_id, score=score)
