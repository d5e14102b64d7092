"""Scoring a contact: events and fact changes into ledger rows, scores, and trigger evaluations.

Callers hold the contact's lock (see `history.service.lock_contact`) for the whole transaction, so
the ledger read here is the whole ledger and the rows written cannot race another worker's. The
ledger's unique key (model, rule, event id) is the second line of defence: a violation fails the
transaction, which the consumer retries.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import insert
from sqlalchemy import select as sa_select
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.kit.contracts import scoring as topics
from services.kit.deferred_rows import defer_rows, write_deferred
from services.kit.logging import get_logger
from services.kit.outbox import Outbox
from services.scoring.history.models import ContactFacts
from services.scoring.history.service import HistoryEvent, RecentHistory, contact_document, event_document, recent_events
from services.scoring.rules import (
    LedgerEntry,
    LedgerTotals,
    PatternRule,
    Replay,
    RuleSet,
    ScoreBreakdown,
    ScoreTally,
    ScoringInputError,
    award,
    fit_changes,
    fit_points,
    match_event,
    match_fit,
)
from services.scoring.rulesets.service import ActiveModel
from services.scoring.scores.models import ContactScore, LedgerRow
from services.scoring.thresholds.models import ScoreThreshold, ThresholdState
from services.scoring.thresholds.triggers import backfill_previous, evaluate, thresholds_by_model, triggers_for

log = get_logger(__name__)

LEDGER = LedgerRow.__table__  # type: ignore[attr-defined]


class LedgerRecord(Protocol):
    """A ledger row as read: a `LedgerRow` object or a plain row of its table."""

    id: int | None
    rule: str
    kind: str
    points: int
    rule_points: int
    reason: str
    event_id: str | None
    event_ids: list[str]
    version: int
    source: str
    occurred_at: datetime
    recorded_at: datetime


@dataclass
class ContactBook:
    """What scoring stores about one contact's scores: ledger rows, scores and trigger states."""

    contact_id: str
    rows: dict[str, list[LedgerRecord]] = field(default_factory=dict)
    scores: dict[str, ContactScore] = field(default_factory=dict)
    states: dict[str, ThresholdState] = field(default_factory=dict)
    _entries: dict[str, list[LedgerEntry]] = field(default_factory=dict)
    # Each model's score and cap totals, updated as entries are added, so that each event of a
    # contact with a long ledger does not add up all of it again.
    tallies: dict[str, ScoreTally] = field(default_factory=dict)
    # The cap totals per model, with the entries added since, which the next read adds to them.
    totals: dict[str, tuple[RuleSet, LedgerTotals, list[LedgerEntry]]] = field(default_factory=dict)

    def entries(self, model: str) -> list[LedgerEntry]:
        """Return the ledger of one model as the rules library reads it."""
        if model not in self._entries:
            self._entries[model] = [ledger_entry(row) for row in self.rows.get(model, [])]
        return self._entries[model]

    def add_entries(self, model: str, entries: Sequence[LedgerEntry]) -> None:
        """Add new entries to the ledger of one model; `rows`, which only reports read, stays as loaded."""
        self.entries(model).extend(entries)
        if model in self.tallies:
            self.tallies[model].add(entries)
        if model in self.totals:
            # Most contacts get one event in a batch, so the totals are brought up to date only if read again.
            self.totals[model][2].extend(entries)

    def replace_entries(self, model: str, entries: Sequence[LedgerEntry]) -> None:
        """Put a recomputed ledger in place; `rows` of the model are no longer read afterwards."""
        self.tallies.pop(model, None)
        self.totals.pop(model, None)
        self.rows[model] = []
        self._entries[model] = list(entries)


@dataclass
class ScoringRun:
    """One transaction's scoring work: where to publish, what evaluated the change and when."""

    session: AsyncSession
    outbox: Outbox
    source: str
    now: datetime
    # In bulk mode (rescoring a chunk) new score rows are collected here and inserted in one statement.
    bulk: bool = False
    new_scores: list[dict[str, Any]] = field(default_factory=list)
    # The models whose thresholds the first lookup loads at once.
    models: Sequence[str] = ()
    _thresholds: dict[str, list[ScoreThreshold]] = field(default_factory=dict)
    # The books this run's transaction has loaded, by contact and models; a batch of events shares them.
    books: dict[tuple[str, tuple[str, ...]], "ContactBook"] = field(default_factory=dict)
    # The events a batch read at once for its pattern rules; None reads them per event.
    history: RecentHistory | None = None

    async def book(self, contact_id: str) -> "ContactBook":
        """Return the contact's book for this run's models, read once per transaction."""
        key = (contact_id, tuple(self.models))
        if key not in self.books:
            self.books[key] = (await load_books(self.session, [contact_id], self.models))[contact_id]
        return self.books[key]

    async def thresholds(self, model: str) -> list[ScoreThreshold]:
        if model not in self._thresholds:
            names = sorted({model, *self.models} - set(self._thresholds))
            self._thresholds.update(await thresholds_by_model(self.session, names))
        return self._thresholds[model]


def ledger_entry(row: LedgerRecord) -> LedgerEntry:
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


def ledger_values(
    contact_id: str, model: ActiveModel, entry: LedgerEntry, *, source: str, now: datetime
) -> dict[str, Any]:
    return dict(
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
    session: AsyncSession, contact_ids: Sequence[str], models: Sequence[str] | None = None, *, full: bool = False
) -> dict[str, ContactBook]:
    """Load the ledger, scores and trigger states of contacts, for `models` or for every model.

    Without `full`, only the columns that scoring reads are loaded, straight into ledger entries
    (the books' `rows` stay empty), because a busy contact's ledger is read on every event.
    """
    books = {contact_id: ContactBook(contact_id) for contact_id in contact_ids}
    if not contact_ids:
        return books
    ids = list(contact_ids)

    # The rows this transaction recorded so far are part of the ledger it reads.
    await write_deferred(session, LEDGER)
    columns = [LEDGER] if full else [LEDGER.c[name] for name in _ENTRY_COLUMNS]
    ledger_query = sa_select(*columns).where(LEDGER.c.contact_id.in_(ids)).order_by(LEDGER.c.id)
    score_query = select(ContactScore).where(col(ContactScore.contact_id).in_(ids))
    if models is not None:
        ledger_query = ledger_query.where(LEDGER.c.model.in_(list(models)))
        score_query = score_query.where(col(ContactScore.model).in_(list(models)))
    for row in (await session.exec(ledger_query)).all():  # type: ignore[call-overload]
        book = books[row.contact_id]
        if full:
            book.rows.setdefault(row.model, []).append(row)
        else:
            book.entries(row.model).append(_entry_of(row))
    for score in (await session.exec(score_query)).all():
        books[score.contact_id].scores[score.model] = score

    state_query = select(ThresholdState).where(col(ThresholdState.contact_id).in_(ids))
    for state in (await session.exec(state_query)).all():
        books[state.contact_id].states[state.trigger] = state
    return books


_ENTRY_COLUMNS = ("contact_id", "model", "rule", "kind", "points", "rule_points", "reason", "event_id", "occurred_at")


def _entry_of(row: Any) -> LedgerEntry:
    return LedgerEntry(
        rule=row.rule,
        kind=row.kind,
        points=row.points,
        rule_points=row.rule_points,
        occurred_at=row.occurred_at,
        reason=row.reason,
        event_id=row.event_id,
    )


def current_score(model: ActiveModel, book: ContactBook, now: datetime) -> ScoreBreakdown:
    """Return the contact's score under `model` at `now`, with decay applied.

    The book keeps a tally of the score, to which each event's entries are added, and which the
    next event moves to its own `now`.
    """
    tally = book.tallies.get(model.name)
    if tally is None or tally.rule_set is not model.rule_set:
        tally = ScoreTally(model.rule_set, book.entries(model.name), now=now)
    elif tally.now != now:
        tally = tally.at(now)
    book.tallies[model.name] = tally
    return tally.breakdown()


def ledger_totals(model: ActiveModel, book: ContactBook) -> LedgerTotals:
    """Return the sums and keys of the model's ledger that caps and repeated events need."""
    cached = book.totals.get(model.name)
    if cached is not None and cached[0] is model.rule_set:
        rule_set, totals, added = cached
        if added:
            totals = totals.plus(rule_set, added)
            book.totals[model.name] = (rule_set, totals, [])
        return totals
    totals = LedgerTotals.from_entries(model.rule_set, book.entries(model.name))
    book.totals[model.name] = (model.rule_set, totals, [])
    return totals


async def score_event(
    run: ScoringRun, facts: ContactFacts, event: HistoryEvent, models: Sequence[ActiveModel]
) -> None:
    """Score one stored event against every active model.

    A contact seen by a model for the first time also gets that model's fit points.
    """
    if not models:
        return
    run.models = [model.name for model in models]
    book = await run.book(facts.contact_id)
    contact = contact_document(facts)
    window, types = pattern_reach(models)
    recent = await recent_events(run.session, event, window=window, types=types, history=run.history)
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
        new_entries = award(model.rule_set, matches, totals=ledger_totals(model, book))
    if model.name not in book.scores:
        fit_matches = match_fit(model.compiled, contact=contact)
        new_entries += fit_changes(model.rule_set, fit_matches, current=fit_points(entries), at=now)
    return new_entries


async def score_fit(run: ScoringRun, facts: ContactFacts, models: Sequence[ActiveModel]) -> None:
    """Bring each model's fit points in line with the contact's facts as they are now."""
    if not models:
        return
    run.models = [model.name for model in models]
    book = await run.book(facts.contact_id)
    contact = contact_document(facts)
    for model in models:
        matches = match_fit(model.compiled, contact=contact)
        entries = fit_changes(model.rule_set, matches, current=fit_points(book.entries(model.name)), at=run.now)
        if entries:
            await record_change(run, book, model, entries)


async def record_change(run: ScoringRun, book: ContactBook, model: ActiveModel, entries: Sequence[LedgerEntry]) -> None:
    """Write new ledger rows, the new score, and evaluate the model's triggers on the change."""
    previous = current_score(model, book, run.now)
    rows = [ledger_values(book.contact_id, model, entry, source=run.source, now=run.now) for entry in entries]
    defer_rows(run.session, LEDGER, rows)
    book.add_entries(model.name, entries)
    current = current_score(model, book, run.now)

    save_score(run, book, model, current)
    await evaluate_triggers(run, book, model, previous.total, current.total)


async def replace_ledgers(
    run: ScoringRun, books: Mapping[str, ContactBook], model: ActiveModel, replays: Mapping[str, Replay]
) -> None:
    """Put recomputed ledgers in place of the model's rows (the caller deleted them) and rescore.

    The rows are inserted in one statement, because a rescore writes thousands of them per chunk.
    """
    values = []
    for contact_id, replayed in replays.items():
        book = books[contact_id]
        previous = current_score(model, book, run.now)
        values += [ledger_values(contact_id, model, entry, source=run.source, now=run.now) for entry in replayed.entries]
        book.replace_entries(model.name, replayed.entries)
        if not replayed.entries and model.name not in book.scores:
            continue
        save_score(run, book, model, replayed.score)
        await evaluate_triggers(run, book, model, previous.total, replayed.score.total, backfill_mql=True)
    # Tables, not ORM classes, so SQLAlchemy sends one executemany each without ORM bookkeeping.
    if values:
        await run.session.exec(insert(LEDGER), params=values)  # type: ignore[call-overload]
    if run.new_scores:
        await run.session.exec(insert(ContactScore.__table__), params=run.new_scores)  # type: ignore[attr-defined, call-overload]
        run.new_scores = []


def save_score(run: ScoringRun, book: ContactBook, model: ActiveModel, breakdown: ScoreBreakdown) -> None:
    """Store the score snapshot and publish score.changed when it differs from the stored one."""
    values = {
        "total": breakdown.total,
        "fit": breakdown.fit,
        "engagement": breakdown.engagement,
        "version": model.version,
        "updated_at": run.now,
    }
    score = book.scores.get(model.name)
    if score is None:
        changed = True
        row = {"contact_id": book.contact_id, "model": model.name, **values}
        if run.bulk:
            run.new_scores.append(row)
        else:
            book.scores[model.name] = ContactScore(**row)
            run.session.add(book.scores[model.name])
    else:
        changed = (score.total, score.fit, score.engagement) != (breakdown.total, breakdown.fit, breakdown.engagement)
        for key, value in values.items():
            setattr(score, key, value)
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
    run: ScoringRun,
    book: ContactBook,
    model: ActiveModel,
    previous: float | None,
    current: float,
    *,
    backfill_mql: bool = False,
) -> None:
    """Apply a score change to the model's triggers.

    With `backfill_mql` (a rescore) the MQL trigger treats the contact as newly found, as a backfill
    does. The rescore may apply a lower MQL threshold, which an unchanged score is then above
    without having crossed it.
    """
    for trigger in triggers_for(model, await run.thresholds(model.name)):
        state = book.states.get(trigger.key)
        if backfill_mql and trigger.name is None:
            previous_for_trigger = backfill_previous(state)
        else:
            previous_for_trigger = previous
        state = await evaluate(
            run.session,
            run.outbox,
            contact_id=book.contact_id,
            trigger=trigger,
            state=state,
            previous=previous_for_trigger,
            current=current,
            source=run.source,
            now=run.now,
        )
        if state is not None:
            book.states[trigger.key] = state


def pattern_reach(models: Sequence[ActiveModel]) -> tuple[timedelta, frozenset[str]]:
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
