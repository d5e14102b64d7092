"""A contact's scores explained: per model the total, fit and engagement now, and every ledger row."""

from datetime import datetime

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.scoring.history.models import ScoredEvent
from services.scoring.rulesets.models import ScoreModel
from services.scoring.rulesets.service import model_as_active
from services.scoring.schemas import ContactScoreOut, LedgerItem, ModelScore
from services.scoring.scores.service import ContactBook, LedgerRecord, current_score, load_books
from services.scoring.rulesets.service import ActiveModel
from services.scoring.thresholds.triggers import mql_trigger_key


async def contact_score_report(session: AsyncSession, contact_id: str, now: datetime) -> ContactScoreOut:
    """Return the contact's score under every model that has scored it, computed at `now`."""
    book = (await load_books(session, [contact_id], full=True))[contact_id]
    events_held = (await session.exec(select(func.count()).where(ScoredEvent.contact_id == contact_id))).one()
    names = sorted(set(book.scores) | set(book.rows))
    models = (await session.exec(select(ScoreModel).where(col(ScoreModel.name).in_(names)))).all()

    scores = {}
    for model in models:
        active = await model_as_active(session, model)
        scores[model.name] = model_score(active, book, now)
    return ContactScoreOut(contact_id=contact_id, at=now, events_held=int(events_held), models=scores)


def model_score(model: ActiveModel, book: ContactBook, now: datetime) -> ModelScore:
    breakdown = current_score(model, book, now)
    rows = {id(entry): row for entry, row in zip(book.entries(model.name), book.rows.get(model.name, []), strict=True)}
    ledger = [_ledger_item(rows[id(item.entry)], item.current_points, model) for item in breakdown.entries]
    ledger.sort(key=lambda item: (item.occurred_at, item.id))
    stored = book.scores.get(model.name)
    state = book.states.get(mql_trigger_key(model.name))
    return ModelScore(
        model=model.name,
        version=stored.version if stored is not None else None,
        active_version=model.version,
        total=breakdown.total,
        fit=breakdown.fit,
        engagement=breakdown.engagement,
        engagement_before_decay=breakdown.engagement_before_decay,
        linear_decay=breakdown.linear_decay,
        mql_threshold=model.mql_threshold,
        mql=state is not None and state.fired,
        updated_at=stored.updated_at if stored is not None else now,
        ledger=ledger,
    )


def _ledger_item(row: LedgerRecord, current_points: float, model: ActiveModel) -> LedgerItem:
    rule = model.rule_set.rule(row.rule)
    assert row.id is not None
    return LedgerItem(
        id=row.id,
        rule=row.rule,
        kind=row.kind,  # type: ignore[arg-type]
        points=row.points,
        current_points=round(current_points, 2),
        rule_points=row.rule_points,
        reason=row.reason,  # type: ignore[arg-type]
        description=rule.description if rule is not None else None,
        event_id=row.event_id,
        event_ids=row.event_ids,
        version=row.version,
        source=row.source,
        occurred_at=row.occurred_at,
        recorded_at=row.recorded_at,
    )
