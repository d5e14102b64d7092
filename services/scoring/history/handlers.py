"""Consumers of the contacts service's events: the scoring history, facts, scores and erasure.

Each handler locks the contact first and does not commit: the consumer commits once, together
with the processed-event mark. Ledger rows are written before returning, so a broken ledger key
fails the handler (and the job is retried) instead of passing for a duplicate delivery.

Within one worker process, jobs for the same contact also queue on an asyncio lock before they
reach the database lock. A worker runs up to 20 jobs at once, and on SQLite each job waiting
for the database lock polls it with growing sleeps, which leaves the lock idle between commits.
A job that has to wait first ends its read-only transaction, so waiting jobs do not keep all of
the pool's connections checked out.
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from services.kit import clock
from services.kit.consumer import BATCH_CACHE, IN_BATCH, Handler
from services.kit.contracts import EventEnvelope, contact_id_of
from services.kit.contracts import contacts as contact_topics
from services.kit.deferred_rows import write_deferred
from services.kit.logging import get_logger
from services.scoring.history.service import (
    apply_snapshot,
    apply_stage,
    create_missing_contacts,
    drop_erased,
    erase_contact,
    is_machine_event,
    lock_contact,
    lock_existing_contacts,
    read_recent_history,
    scored_event,
    store_event,
    store_events,
)
from services.scoring.history.models import ContactFacts
from services.scoring.rulesets.service import ActiveModel, active_models
from services.scoring.scores.service import LEDGER, ScoringRun, load_books, pattern_reach, score_event, score_fit

log = get_logger(__name__)

_contact_locks: dict[str, asyncio.Lock] = {}
_contact_waiters: dict[str, int] = {}


@asynccontextmanager
async def contact_turn(session: AsyncSession, contact_id: str) -> AsyncIterator[None]:
    """Wait for the jobs of this process on the same contact. Across processes the database lock decides.

    A batch skips the in-process lock, because it keeps its contacts locked in the database until
    it commits and could otherwise wait on the in-process lock for ever. The database lock decides.
    A batch also writes its rows at its end rather than before each read, so that the inserts of
    all its events go out together. Its reads do not need them: the books of its contacts stay in
    the batch cache, and the event history is written at once.
    """
    if session.info.get(IN_BATCH):
        with session.no_autoflush:
            yield
        return
    lock = _contact_locks.setdefault(contact_id, asyncio.Lock())
    _contact_waiters[contact_id] = _contact_waiters.get(contact_id, 0) + 1
    try:
        if lock.locked():
            # Nothing was written yet (the consumer only read the processed-event mark), so
            # ending the transaction loses nothing and returns the connection to the pool.
            await session.rollback()
        async with lock:
            yield
    finally:
        _contact_waiters[contact_id] -= 1
        if _contact_waiters[contact_id] == 0:
            del _contact_waiters[contact_id]
            del _contact_locks[contact_id]


async def _active_models(session: AsyncSession) -> list[ActiveModel]:
    """Return the active models, compiled once per batch rather than once per event."""
    cache = session.info.get(BATCH_CACHE)
    if cache is None:
        return await active_models(session)
    if "active_models" not in cache:
        cache["active_models"] = await active_models(session)
    return cache["active_models"]  # type: ignore[no-any-return]


def _scoring_run(session: AsyncSession, ctx: dict[str, Any], *, source: str, now: datetime) -> ScoringRun:
    """Start the scoring of one event; the runs of a batch share the thresholds and books they load."""
    run = ScoringRun(session, ctx["outbox"], source=source, now=now)
    cache = session.info.get(BATCH_CACHE)
    if cache is not None:
        run._thresholds = cache.setdefault("thresholds", {})
        run.books = cache.setdefault("books", {})
        run.history = cache.get("recent")
    return run


async def _lock(session: AsyncSession, contact_id: str, now: datetime) -> ContactFacts | None:
    """Lock the contact for the transaction; a batch locks each of its contacts once."""
    cache = session.info.get(BATCH_CACHE)
    if cache is None:
        return await lock_contact(session, contact_id, now)
    locked = cache.setdefault("locked", {})
    if contact_id not in locked:
        locked[contact_id] = await lock_contact(session, contact_id, now)
    return locked[contact_id]  # type: ignore[no-any-return]


async def prefetch_batch(session: AsyncSession, envelopes: list[EventEnvelope], ctx: dict[str, Any]) -> None:
    """Lock a batch's contacts and load their books with a few statements instead of a few per event."""
    contact_ids = sorted({contact_id for envelope in envelopes if (contact_id := contact_id_of(envelope))})
    if not contact_ids:
        return

    cache = session.info[BATCH_CACHE]
    locked = cache.setdefault("locked", {})
    # Contacts new to scoring get their facts rows here with one statement, rather than one by one
    # in `lock_contact`, unless the batch erases them, which that path handles.
    leaving = {contact_id_of(envelope) for envelope in envelopes if envelope.topic == contact_topics.CONTACT_ERASED}
    created = await create_missing_contacts(session, [contact_id for contact_id in contact_ids if contact_id not in leaving], clock.now())
    for facts in await lock_existing_contacts(session, contact_ids):
        locked[facts.contact_id] = facts
    for contact_id in await drop_erased(session, sorted(created)):
        locked[contact_id] = None

    # The history of the batch's events goes in with one statement, for contacts that have a facts
    # row and no erasure in this batch. The others are stored one by one after `lock_contact`,
    # which finds the erasure so that the event is dropped.
    events = [
        event
        for envelope in envelopes
        if envelope.topic == contact_topics.EVENT_RECORDED
        and locked.get((event := contact_topics.EventRecorded.model_validate(envelope.payload).event).contact_id) is not None
        and event.contact_id not in leaving
    ]
    await store_events(session, events)
    cache["stored"] = {event.id for event in events}

    models = await _active_models(session)
    names = tuple(model.name for model in models)
    if names:
        books = await load_books(session, contact_ids, names)
        cache.setdefault("books", {}).update({(contact_id, names): book for contact_id, book in books.items()})

    # Pattern rules look at the events around each event. For the contacts whose events of this
    # batch are all stored by now, those are read here with one statement.
    window, types = pattern_reach(models)
    covered = sorted({event.contact_id for event in events})
    if covered and types and window > timedelta(0):
        cache["recent"] = await read_recent_history(
            session,
            covered,
            since=min(event.occurred_at for event in events) - window,
            until=max(event.occurred_at for event in events) + window,
            types=types,
        )


def _forget(session: AsyncSession, contact_id: str) -> None:
    """Drop an erased contact from the batch's caches, so later events of the batch find it erased."""
    cache = session.info.get(BATCH_CACHE)
    if cache is None:
        return
    cache.setdefault("locked", {})[contact_id] = None
    for key in [key for key in cache.get("books", {}) if key[0] == contact_id]:
        del cache["books"][key]


async def _end_event(session: AsyncSession) -> None:
    """Write the event's rows now, unless a batch writes them all at its end.

    The deferred ledger rows go in here too, so that a broken ledger key fails the handler itself
    rather than the commit.
    """
    if not session.info.get(IN_BATCH):
        await write_deferred(session, LEDGER)
        await session.flush()


async def on_event_recorded(session: AsyncSession, envelope: EventEnvelope, ctx: dict[str, Any]) -> None:
    """Keep the event in the history, then score it against every active model."""
    event = contact_topics.EventRecorded.model_validate(envelope.payload).event
    async with contact_turn(session, event.contact_id):
        await _score_recorded_event(session, event, ctx)


async def _score_recorded_event(session: AsyncSession, event: contact_topics.TimelineEvent, ctx: dict[str, Any]) -> None:
    now = clock.now()
    facts = await _lock(session, event.contact_id, now)
    if facts is None:
        log.info("event.dropped_for_erased_contact", event_id=event.id, contact_id=event.contact_id)
        return

    if event.id in session.info.get(BATCH_CACHE, {}).get("stored", ()):
        stored = scored_event(event)
    else:
        stored = await store_event(session, event)
    if is_machine_event(stored.properties):
        log.debug("event.machine_not_scored", event_id=event.id, contact_id=event.contact_id)
        return

    run = _scoring_run(session, ctx, source="event", now=now)
    await score_event(run, facts, stored, await _active_models(session))
    await _end_event(session)


async def on_contact_changed(session: AsyncSession, envelope: EventEnvelope, ctx: dict[str, Any]) -> None:
    """Store the contact's new facts and bring its fit points in line with them."""
    snapshot = contact_topics.ContactChanged.model_validate(envelope.payload).contact
    async with contact_turn(session, snapshot.id):
        await _apply_snapshot(session, snapshot, envelope, ctx)


async def _apply_snapshot(
    session: AsyncSession, snapshot: contact_topics.ContactSnapshot, envelope: EventEnvelope, ctx: dict[str, Any]
) -> None:
    now = clock.now()
    facts = await _lock(session, snapshot.id, now)
    if facts is None:
        return
    if not apply_snapshot(facts, snapshot.model_dump(mode="json"), envelope.occurred_at, now):
        log.info("contact.stale_snapshot_ignored", contact_id=snapshot.id, event_id=envelope.id)
        return
    session.add(facts)

    run = _scoring_run(session, ctx, source="contact", now=now)
    await score_fit(run, facts, await _active_models(session))
    await _end_event(session)


async def on_stage_changed(session: AsyncSession, envelope: EventEnvelope, ctx: dict[str, Any]) -> None:
    """Keep the contact's stage, for fit rules on the stage and for calibration outcomes."""
    change = contact_topics.StageChanged.model_validate(envelope.payload)
    async with contact_turn(session, change.contact_id):
        await _apply_stage(session, change, ctx)


async def _apply_stage(session: AsyncSession, change: contact_topics.StageChanged, ctx: dict[str, Any]) -> None:
    now = clock.now()
    facts = await _lock(session, change.contact_id, now)
    if facts is None:
        return
    apply_stage(facts, change.to_stage, change.at)
    facts.updated_at = now
    session.add(facts)

    run = _scoring_run(session, ctx, source="contact", now=now)
    await score_fit(run, facts, await _active_models(session))
    await _end_event(session)


async def on_contact_erased(session: AsyncSession, envelope: EventEnvelope, ctx: dict[str, Any]) -> None:
    """Delete the contact's history, facts, scores, ledger and trigger state."""
    erased = contact_topics.ContactErased.model_validate(envelope.payload)
    now = clock.now()
    async with contact_turn(session, erased.contact_id):
        await _lock(session, erased.contact_id, now)
        # The deletes must see the rows that earlier events of a batch have not written yet.
        await session.flush()
        await erase_contact(session, erased.contact_id, now)
        _forget(session, erased.contact_id)
    log.info("contact.erased", contact_id=erased.contact_id)


HANDLERS: dict[str, Handler] = {
    contact_topics.EVENT_RECORDED: on_event_recorded,
    contact_topics.CONTACT_CHANGED: on_contact_changed,
    contact_topics.STAGE_CHANGED: on_stage_changed,
    contact_topics.CONTACT_ERASED: on_contact_erased,
}
