"""Event consumers apply each event id once, however often it is delivered."""

import asyncio
import uuid
from typing import Any

import pytest
from arq import Retry
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from services.kit import clock
from services.kit.consumer import BATCH_CACHE, MAX_TRIES, EventConsumer, retry_delay_s
from services.kit.contracts import EventEnvelope
from services.kit.db import Database
from services.kit.deferred_rows import defer_rows
from services.sequencer.db import ProcessedEvent
from services.sequencer.settings import SequencerSettings


def _envelope() -> EventEnvelope:
    return EventEnvelope(id=uuid.uuid4().hex, topic="test.counted", producer="tests", occurred_at=clock.now(), payload={})


async def test_second_delivery_is_a_duplicate() -> None:
    calls: list[str] = []

    async def handler(session: AsyncSession, envelope: EventEnvelope, ctx: dict[str, Any]) -> None:
        calls.append(envelope.id)

    consumer = EventConsumer(ProcessedEvent, {"test.counted": handler})
    db = Database(SequencerSettings().database_url)
    envelope = _envelope()

    first = await consumer.apply(db, envelope, {})
    second = await consumer.apply(db, envelope, {})

    assert (first, second) == ("applied", "duplicate")
    assert calls == [envelope.id]
    await db.dispose()


async def test_concurrent_deliveries_apply_once() -> None:
    async def handler(session: AsyncSession, envelope: EventEnvelope, ctx: dict[str, Any]) -> None:
        await asyncio.sleep(0.05)

    consumer = EventConsumer(ProcessedEvent, {"test.counted": handler})
    db = Database(SequencerSettings().database_url)
    envelope = _envelope()

    outcomes = await asyncio.gather(*(consumer.apply(db, envelope, {}) for _ in range(4)), return_exceptions=True)

    applied = [outcome for outcome in outcomes if outcome == "applied"]
    assert len(applied) == 1, outcomes
    await db.dispose()


async def test_conflict_of_handler_rows_is_not_duplicate() -> None:
    db = Database(SequencerSettings().database_url)
    applied = _envelope()
    table = ProcessedEvent.__table__  # type: ignore[attr-defined]

    async def handler(session: AsyncSession, envelope: EventEnvelope, ctx: dict[str, Any]) -> None:
        # A row whose key exists already, written only at the commit.
        defer_rows(session, table, [{"event_id": applied.id, "topic": "test.counted", "processed_at": clock.now()}])

    await EventConsumer(ProcessedEvent, {}).apply(db, applied, {})
    consumer = EventConsumer(ProcessedEvent, {"test.counted": handler})
    failing = _envelope()

    with pytest.raises(IntegrityError):
        await consumer.apply(db, failing, {})
    async with db.session() as session:
        assert await session.get(ProcessedEvent, failing.id) is None
    await db.dispose()


async def test_unknown_topic_is_recorded_and_ignored() -> None:
    consumer = EventConsumer(ProcessedEvent, {})
    db = Database(SequencerSettings().database_url)
    envelope = _envelope()

    assert await consumer.apply(db, envelope, {}) == "ignored"
    assert await consumer.apply(db, envelope, {}) == "duplicate"
    await db.dispose()


def test_retry_delay_grows_and_is_capped() -> None:
    assert retry_delay_s(1) == 0.5
    assert retry_delay_s(2) == 1.0
    assert retry_delay_s(20) == 60.0


async def test_batch_applies_new_events_once() -> None:
    calls: list[str] = []

    async def handler(session: AsyncSession, envelope: EventEnvelope, ctx: dict[str, Any]) -> None:
        calls.append(envelope.id)

    consumer = EventConsumer(ProcessedEvent, {"test.counted": handler})
    db = Database(SequencerSettings().database_url)
    earlier, *fresh = [_envelope() for _ in range(4)]
    await consumer.apply(db, earlier, {})
    calls.clear()

    outcomes = await consumer.apply_batch(db, [fresh[0], earlier, fresh[1], fresh[0], fresh[2]], {})

    assert calls == [envelope.id for envelope in fresh]
    assert outcomes == {"applied": 3, "duplicate": 2}
    await db.dispose()


async def test_shared_event_applied_once_across_workers() -> None:
    calls: list[str] = []

    async def handler(session: AsyncSession, envelope: EventEnvelope, ctx: dict[str, Any]) -> None:
        calls.append(envelope.id)
        await asyncio.sleep(0.05)

    # Two consumers, as two worker processes have, so neither waits for the other's batch in memory.
    workers = [EventConsumer(ProcessedEvent, {"test.counted": handler}) for _ in range(2)]
    db = Database(SequencerSettings().database_url)
    shared, first_only, second_only = _envelope(), _envelope(), _envelope()

    outcomes = await asyncio.gather(
        workers[0].apply_batch(db, [first_only, shared], {}),
        workers[1].apply_batch(db, [shared, second_only], {}),
    )

    # The later batch waited for the earlier one's mark on the shared event and skipped it, so no
    # handler ran twice and neither batch had to be split.
    assert sorted(calls) == sorted([first_only.id, shared.id, second_only.id])
    assert sum(outcome["applied"] for outcome in outcomes) == 3
    assert sum(outcome["duplicate"] for outcome in outcomes) == 1
    assert [worker.split_batches for worker in workers] == [0, 0]
    await db.dispose()


async def test_failing_event_holds_back_itself() -> None:
    calls: list[str] = []
    broken = _envelope()

    async def handler(session: AsyncSession, envelope: EventEnvelope, ctx: dict[str, Any]) -> None:
        if envelope.id == broken.id:
            raise RuntimeError("this event cannot be applied yet")
        calls.append(envelope.id)

    consumer = EventConsumer(ProcessedEvent, {"test.counted": handler})
    db = Database(SequencerSettings().database_url)
    before, after = _envelope(), _envelope()

    with pytest.raises(RuntimeError, match="cannot be applied yet"):
        await consumer.apply_batch(db, [before, broken, after], {})

    assert consumer.split_batches == 1
    # The batch stopped at the broken event and rolled back, so the event-by-event pass applied the others.
    assert calls == [before.id, before.id, after.id]
    assert await consumer.apply(db, before, {}) == "duplicate"
    assert await consumer.apply(db, after, {}) == "duplicate"
    await db.dispose()


async def test_after_batch_runs_once() -> None:
    hooks: list[int] = []

    async def handler(session: AsyncSession, envelope: EventEnvelope, ctx: dict[str, Any]) -> None:
        session.info[BATCH_CACHE].setdefault("seen", []).append(envelope.id)

    async def after_batch(session: AsyncSession, ctx: dict[str, Any]) -> None:
        hooks.append(len(session.info[BATCH_CACHE]["seen"]))

    consumer = EventConsumer(ProcessedEvent, {"test.counted": handler}, after_batch=after_batch)
    db = Database(SequencerSettings().database_url)
    batch = [_envelope() for _ in range(3)]

    await consumer.apply_batch(db, batch, {})
    await consumer.apply_batch(db, batch, {})

    # The second delivery applied nothing, so it had nothing for the hook to finish.
    assert hooks == [3]
    await db.dispose()


async def test_failed_batch_retries_then_raises() -> None:
    async def handler(session: AsyncSession, envelope: EventEnvelope, ctx: dict[str, Any]) -> None:
        raise RuntimeError("the database is away")

    consumer = EventConsumer(ProcessedEvent, {"test.counted": handler})
    db = Database(SequencerSettings().database_url)
    documents = [_envelope().model_dump(mode="json")]

    with pytest.raises(Retry) as retry:
        await consumer.consume_batch({"db": db, "job_try": 3}, documents)
    with pytest.raises(RuntimeError, match="the database is away"):
        await consumer.consume_batch({"db": db, "job_try": MAX_TRIES}, documents)

    assert retry.value.defer_score == retry_delay_s(3) * 1000
    await db.dispose()
