"""Scoring a contact: events and fact changes into ledger rows, scores, and trigger evaluations.

Callers hold the contact's lock (see `history.service.lock_contact`) for the whole transaction, so
the ledger read here is the whole ledger and the rows written cannot race another worker's. The
ledger's unique key (model, rule, event id) is the second line of defence: a violation fails the
transaction, which the consumer retries.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.kit.contracts import scoring as topics
from services.kit.logging import get_logger
from services.kit.outbox import Outbox
from services.scoring.history.models import ContactFacts, ScoredEvent
from services.scoring.history.service import contact_document, event_document, recent_events
from services.scoring.rules import (
    LedgerEntry,
    LedgerTotals,
    PatternRule,
    ScoreBreakdown,
    ScoringInputError,
    award,
    compute_score,
    fit_changes,
    fit_points,
    match_event,
    match_fit,
)
from services.scoring.rulesets.service import ActiveModel
from services.scoring.scores.models import ContactScore, LedgerRow
from services.scoring.thresholds.models import ScoreThreshold, ThresholdState
from services.scoring.thresholds.triggers import evaluate, thresholds_by_model, triggers_for

log = get_logger(__name__)


@dataclass
class ContactBook:
    """What scoring stores about one contact's scores: ledger rows, scores and trigger states."""

    contact_id: str
    rows: dict[str, list[LedgerRow]] = field(default_factory=dict)
    scores: dict[str, ContactScore] = field(default_factory=dict)
    states: dict[str, ThresholdState] = field(default_factory=dict)
    _entries: dict[str, list[LedgerEntry]] = field(default_factory=dict)

    def entries(self, model: str) -> list[LedgerEntry]:
        """Return the ledger of one model as the rules library reads it."""
        if model not in self._entries:
            self._entries[model] = [ledger_entry(row) for row in self.rows.get(model, [])]
        return self._entries[model]

    def add_rows(self, model: str, rows: Sequence[LedgerRow]) -> None:
        self.rows.setdefault(model, []).extend(rows)
        self.entries(model).extend(ledger_entry(row) for row in rows)

    def replace_rows(self, model: str, rows: Sequence[LedgerRow]) -> None:
        self.rows[model] = list(rows)
        self._entries.pop(model, None)


@dataclass
class ScoringRun:
    """One transaction's scoring work: where to publish, what evaluated the change and when."""

    session: AsyncSession
    outbox: Outbox
    source: str
    now: datetime
    _thresholds: dict[str, list[ScoreThreshold]] | None = None

    async def thresholds(self, model: str) -> list[ScoreThreshold]:
        if self._thresholds is None or model not in self._thresholds:
            loaded = await thresholds_by_model(self.session, [model])
            self._thresholds = {**(self._thresholds or {}), **loaded}
        return self._thresholds[model]


def ledger_entry(row: LedgerRow) -> LedgerEntry:
    return LedgerEntry(
        rule=row.rule,
        kind=row.kind,  # type: ignore[arg-type]
        points=row.points,
        rule_points=row.rule_points,
        occurred_at=row.occurred_at,
        reason=row.reason,  # type: ignore[arg-type]
        event_id=row.event_id,
        event_ids=tuple(row.event_ids),
    )


def ledger_row(contact_id: str, model: ActiveModel, entry: LedgerEntry, *, source: str, now: datetime) -> LedgerRow:
    return LedgerRow(
        contact_id=contact_id,
        model=model.name,
        version=model.version,
        rule=entry.rule,
        kind=entry.kind.value,
        points=entry.points,
        rule_points=entry.rule_points,
        reason=entry.reason.value,
        event_id=entry.event_id,
        event_ids=list(entry.event_ids),
        occurred_at=entry.occurred_at,
        recorded_at=now,
        source=source,
    )


async def load_books(
    session: AsyncSession, contact_ids: Sequence[str], models: Sequence[str] | None = None
) -> dict[str, ContactBook]:
    """Load the ledger, scores and trigger states of contacts, for `models` or for every model."""
    books = {contact_id: ContactBook(contact_id) for contact_id in contact_ids}
    if not contact_ids:
        return books
    ids = list(contact_ids)

    ledger_query = select(LedgerRow).where(col(LedgerRow.contact_id).in_(ids)).order_by(LedgerRow.id)
    score_query = select(ContactScore).where(col(ContactScore.contact_id).in_(ids))
    if models is not None:
        ledger_query = ledger_query.where(col(LedgerRow.model).in_(list(models)))
        score_query = score_query.where(col(ContactScore.model).in_(list(models)))
    for row in (await session.exec(ledger_query)).all():
        books[row.contact_id].rows.setdefault(row.model, []).append(row)
    for score in (await session.exec(score_query)).all():
        books[score.contact_id].scores[score.model] = score

    state_query = select(ThresholdState).where(col(ThresholdState.contact_id).in_(ids))
    for state in (await session.exec(state_query)).all():
        books[state.contact_id].states[state.trigger] = state
    return books


def current_score(model: ActiveModel, book: ContactBook, now: datetime) -> ScoreBreakdown:
    """Return the contact's score under `model` at `now`, with decay applied."""
    return compute_score(model.rule_set, book.entries(model.name), now=now)


async def score_event(
    run: ScoringRun, facts: ContactFacts, event: ScoredEvent, models: Sequence[ActiveModel]
) -> None:
    """Score one stored event against every active model.

    A contact seen by a model for the first time also gets that model's fit points.
    """
    if not models:
        return
    book = (await load_books(run.session, [facts.contact_id], [model.name for model in models]))[facts.contact_id]
    contact = contact_document(facts)
    window, types = _pattern_reach(models)
    recent = await recent_events(run.session, event, window=window, types=types)
    document = event_document(event)

    for model in models:
        try:
            entries = _event_entries(model, book, contact, document, recent, run.now)
        except ScoringInputError as error:
            # Malformed input would fail on every retry, so it is logged and skipped instead.
            log.error("score.event_rejected", model=model.name, event_id=event.id, field=error.field, error=error.message)
            continue
        if entries:
            await record_change(run, book, model, entries)


def _event_entries(
    model: ActiveModel,
    book: ContactBook,
    contact: dict[str, object],
    document: dict[str, object],
    recent: list[dict[str, object]],
    now: datetime,
) -> list[LedgerEntry]:
    entries = book.entries(model.name)
    matches = match_event(model.compiled, contact=contact, event=document, recent_events=recent)
    new_entries = []
    if matches:
        totals = LedgerTotals.from_entries(model.rule_set, entries)
        new_entries = award(model.rule_set, matches, totals=totals)
    if model.name not in book.scores:
        fit_matches = match_fit(model.compiled, contact=contact)
        new_entries += fit_changes(model.rule_set, fit_matches, current=fit_points(entries), at=now)
    return new_entries


async def score_fit(run: ScoringRun, facts: ContactFacts, models: Sequence[ActiveModel]) -> None:
    """Bring each model's fit points in line with the contact's facts as they are now."""
    if not models:
        return
    book = (await load_books(run.session, [facts.contact_id], [model.name for model in models]))[facts.contact_id]
    contact = contact_document(facts)
    for model in models:
        matches = match_fit(model.compiled, contact=contact)
        entries = fit_changes(model.rule_set, matches, current=fit_points(book.entries(model.name)), at=run.now)
        if entries:
            await record_change(run, book, model, entries)


async def record_change(run: ScoringRun, book: ContactBook, model: ActiveModel, entries: Sequence[LedgerEntry]) -> None:
    """Write new ledger rows, the new score, and evaluate the model's triggers on the change."""
    previous = current_score(model, book, run.now)
    rows = [ledger_row(book.contact_id, model, entry, source=run.source, now=run.now) for entry in entries]
    run.session.add_all(rows)
    book.add_rows(model.name, rows)
    current = current_score(model, book, run.now)

    save_score(run, book, model, current)
    await evaluate_triggers(run, book, model, previous.total, current.total)


async def replace_ledger(
    run: ScoringRun, book: ContactBook, model: ActiveModel, entries: Sequence[LedgerEntry]
) -> None:
    """Put a recomputed ledger in place of the model's rows (the caller deleted them) and rescore."""
    previous = current_score(model, book, run.now)
    rows = [ledger_row(book.contact_id, model, entry, source=run.source, now=run.now) for entry in entries]
    run.session.add_all(rows)
    book.replace_rows(model.name, rows)
    if not rows and model.name not in book.scores:
        return
    current = current_score(model, book, run.now)

    save_score(run, book, model, current)
    await evaluate_triggers(run, book, model, previous.total, current.total)


def save_score(run: ScoringRun, book: ContactBook, model: ActiveModel, breakdown: ScoreBreakdown) -> None:
    """Store the score snapshot and publish score.changed when it differs from the stored one."""
    score = book.scores.get(model.name)
    if score is None:
        score = ContactScore(contact_id=book.contact_id, model=model.name, updated_at=run.now)
        book.scores[model.name] = score
        changed = True
    else:
        changed = (score.total, score.fit, score.engagement) != (breakdown.total, breakdown.fit, breakdown.engagement)

    score.total = breakdown.total
    score.fit = breakdown.fit
    score.engagement = breakdown.engagement
    score.version = model.version
    score.updated_at = run.now
    run.session.add(score)
    if changed:
        run.outbox.publish(
            run.session,
            topics.SCORE_CHANGED,
            topics.ScoreChanged(
                contact_id=book.contact_id,
                model=model.name,
                total=breakdown.total,
                fit=breakdown.fit,
                engagement=breakdown.engagement,
                at=run.now,
            ),
        )


async def evaluate_triggers(
    run: ScoringRun, book: ContactBook, model: ActiveModel, previous: float | None, current: float
) -> None:
    for trigger in triggers_for(model, await run.thresholds(model.name)):
        state = await evaluate(
            run.session,
            run.outbox,
            contact_id=book.contact_id,
            trigger=trigger,
            state=book.states.get(trigger.key),
            previous=previous,
            current=current,
            source=run.source,
            now=run.now,
        )
        if state is not None:
            book.states[trigger.key] = state


def _pattern_reach(models: Sequence[ActiveModel]) -> tuple[timedelta, frozenset[str]]:
    """Return how far around an event, and which event types, the models' pattern rules look at."""
    window = max((model.compiled.history_window for model in models), default=timedelta(0))
    types = frozenset(
        step.event
        for model in models
        for rule in model.rule_set.rules
        if isinstance(rule, PatternRule)
        for step in rule.steps
    )
    return window, types
