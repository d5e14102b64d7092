"""The outbox: rows first, queue jobs second, and nothing lost when Redis loses a job."""

import asyncio
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from arq.connections import ArqRedis
from sqlalchemy import update
from sqlmodel import select

from services.kit import clock
from services.kit.app import open_queue
from services.kit.db import Database
from services.kit.outbox import (
    CONSUME_EVENTS_JOB,
    FAILED_RETRY_AFTER,
    FAILED_RETRY_MAX,
    JOB_BATCH_SIZE,
    Outbox,
    failed_retry_delay,
    stop_task,
)
from services.kit.queue import ARQ_JOB_KEY_PREFIX, deserialize_job, job_id, queue_name
from services.contacts.db import OutboxMessage
from services.contacts.settings import ContactsSettings
from services.sequencer.settings import SequencerSettings
from tests.support.environment import TestEnvironment as Environment, create_environment, destroy_environment
from tests.support.threads import in_thread
from tests.support.waiting import eventually
from tests.support.workers import drain_queue

TOPIC = "contact.event_recorded"


def _outbox(settings: ContactsSettings) -> Outbox:
    return Outbox(OutboxMessage, service="contacts", namespace=settings.namespace)


async def _rows(db: Database, event_id: str) -> list[OutboxMessage]:
    async with db.session() as session:
        return list((await session.exec(select(OutboxMessage).where(OutboxMessage.event_id == event_id))).all())


async def _publish(db: Database, outbox: Outbox, event_id: str, *, commit: bool = True) -> None:
    payload = {"event": {"id": event_id, "contact_id": "c1", "type": "x", "occurred_at": clock.now().isoformat(),
                         "received_at": clock.now().isoformat(), "properties": {}}}
    async with db.session() as session:
        outbox.publish(session, TOPIC, payload, event_id=event_id)
        if commit:
            await session.commit()


@pytest.fixture(scope="module")
def own(environment: Environment) -> Iterator[Environment]:
    """Databases and a queue namespace for these tests alone.

    Other tests leave unrelayed rows in the session's contacts outbox, and a relay pass takes the
    oldest rows first, so a row published here would wait behind them.
    """
    created = in_thread(lambda: create_environment(environment.root / "outbox-tests", parent=environment))
    yield created
    in_thread(lambda: destroy_environment(created))


async def _setup(own: Environment) -> tuple[ContactsSettings, Database, ArqRedis, Outbox]:
    """Connect, and relay what earlier tests left pending, so a test's rows make batches of their own."""
    settings = ContactsSettings(database_url=own.database_urls["contacts"], NURTURE_NAMESPACE=own.namespace)  # type: ignore[call-arg]
    db, redis, outbox = Database(settings.database_url), open_queue(settings.redis_url), _outbox(settings)
    while await outbox.relay_pending(db, redis):
        pass
    return settings, db, redis, outbox


async def test_rolled_back_publish_leaves_nothing(own: Environment) -> None:
    settings, db, redis, outbox = await _setup(own)
    event_id = uuid.uuid4().hex

    await _publish(db, outbox, event_id, commit=False)

    assert await _rows(db, event_id) == []
    await db.dispose()
    await redis.aclose()


async def test_rollback_drops_its_rows_only(own: Environment) -> None:
    settings, db, redis, outbox = await _setup(own)
    dropped, committed = uuid.uuid4().hex, uuid.uuid4().hex

    async with db.session() as session:
        outbox.publish(session, TOPIC, {"n": 1}, event_id=dropped)
        await session.rollback()
        outbox.publish(session, TOPIC, {"n": 2}, event_id=committed)
        await session.commit()

    assert await _rows(db, dropped) == []
    assert len(await _rows(db, committed)) == 2
    await db.dispose()
    await redis.aclose()


async def test_savepoint_rollback_drops_its_rows(own: Environment) -> None:
    settings, db, redis, outbox = await _setup(own)
    before, inside, released = uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex

    async with db.session() as session:
        outbox.publish(session, TOPIC, {"n": 1}, event_id=before)
        with pytest.raises(RuntimeError):
            async with session.begin_nested():
                outbox.publish(session, TOPIC, {"n": 2}, event_id=inside)
                raise RuntimeError("roll the savepoint back")
        async with session.begin_nested():
            outbox.publish(session, TOPIC, {"n": 3}, event_id=released)
        await session.commit()

    assert len(await _rows(db, before)) == 2
    assert await _rows(db, inside) == []
    assert len(await _rows(db, released)) == 2
    await db.dispose()
    await redis.aclose()


async def test_topic_without_consumers_writes_nothing(own: Environment) -> None:
    settings, db, redis, outbox = await _setup(own)
    event_id = uuid.uuid4().hex

    async with db.session() as session:
        outbox.publish(session, "test.unconsumed", {"n": 1}, event_id=event_id)
        await session.commit()

    assert await _rows(db, event_id) == []
    await db.dispose()
    await redis.aclose()


async def test_publish_writes_one_row_per_consumer(own: Environment) -> None:
    settings, db, redis, outbox = await _setup(own)
    event_id = uuid.uuid4().hex

    await _publish(db, outbox, event_id)

    rows = await _rows(db, event_id)
    assert sorted(row.consumer for row in rows) == ["scoring", "sequencer"]
    assert {row.state for row in rows} == {"pending"}
    await db.dispose()
    await redis.aclose()


async def test_relay_enqueues_with_deterministic_job_id(own: Environment) -> None:
    settings, db, redis, outbox = await _setup(own)
    event_id = uuid.uuid4().hex
    await _publish(db, outbox, event_id)

    await outbox.relay_pending(db, redis)

    rows = {row.consumer: row for row in await _rows(db, event_id)}
    for consumer in ("scoring", "sequencer"):
        identifier = job_id(settings.namespace, "evts", consumer, event_id, event_id, "1")
        assert rows[consumer].job_id == identifier
        assert await redis.exists(ARQ_JOB_KEY_PREFIX + identifier) == 1
        assert await redis.zscore(queue_name(settings.namespace, consumer), identifier) is not None
    assert {row.state for row in rows.values()} == {"enqueued"}
    await db.dispose()
    await redis.aclose()


async def test_relay_batches_events_per_consumer_in_order(own: Environment) -> None:
    settings, db, redis, outbox = await _setup(own)
    event_ids = [uuid.uuid4().hex for _ in range(JOB_BATCH_SIZE + 5)]
    for event_id in event_ids:
        await _publish(db, outbox, event_id)

    while await outbox.relay_pending(db, redis):
        pass

    for consumer in ("scoring", "sequencer"):
        first = job_id(settings.namespace, "evts", consumer, event_ids[0], event_ids[JOB_BATCH_SIZE - 1], str(JOB_BATCH_SIZE))
        second = job_id(settings.namespace, "evts", consumer, event_ids[JOB_BATCH_SIZE], event_ids[-1], "5")
        for identifier, expected in ((first, event_ids[:JOB_BATCH_SIZE]), (second, event_ids[JOB_BATCH_SIZE:])):
            job = deserialize_job(await redis.get(ARQ_JOB_KEY_PREFIX + identifier))
            assert job["f"] == CONSUME_EVENTS_JOB
            assert [envelope["id"] for envelope in job["a"][0]] == expected
    await db.dispose()
    await redis.aclose()


async def _sequencer_row_retired(own: Environment, db: Database, redis: ArqRedis, outbox: Outbox, event_id: str) -> bool:
    """Run the sequencer's queued jobs and a sweep, and return whether the event's sequencer row is gone."""
    await drain_queue("sequencer", SequencerSettings(database_url=own.database_urls["sequencer"], NURTURE_NAMESPACE=own.namespace))  # type: ignore[call-arg]
    await outbox.sweep_enqueued(db, redis)
    return "sequencer" not in [row.consumer for row in await _rows(db, event_id)]


async def test_sweep_requeues_job_lost_from_redis(own: Environment) -> None:
    settings, db, redis, outbox = await _setup(own)
    event_id = uuid.uuid4().hex
    await _publish(db, outbox, event_id)
    await outbox.relay_pending(db, redis)
    identifier = job_id(settings.namespace, "evts", "scoring", event_id, event_id, "1")
    # What a Redis flush does to one job: its record and its place in the queue vanish.
    await redis.delete(ARQ_JOB_KEY_PREFIX + identifier)
    await redis.zrem(queue_name(settings.namespace, "scoring"), identifier)
    clock.travel_to(clock.now() + timedelta(seconds=30))

    await outbox.sweep_enqueued(db, redis)

    assert await redis.exists(ARQ_JOB_KEY_PREFIX + identifier) == 1
    assert await redis.zscore(queue_name(settings.namespace, "scoring"), identifier) is not None
    rows = {row.consumer: row for row in await _rows(db, event_id)}
    assert "scoring" not in rows or rows["scoring"].attempts >= 2
    await db.dispose()
    await redis.aclose()


async def test_requeue_rebuilds_whole_batch(own: Environment) -> None:
    settings, db, redis, outbox = await _setup(own)
    event_ids = [uuid.uuid4().hex for _ in range(3)]
    for event_id in event_ids:
        await _publish(db, outbox, event_id)
    await outbox.relay_pending(db, redis)
    identifier = job_id(settings.namespace, "evts", "scoring", event_ids[0], event_ids[-1], "3")
    await redis.delete(ARQ_JOB_KEY_PREFIX + identifier)
    await redis.zrem(queue_name(settings.namespace, "scoring"), identifier)
    clock.travel_to(clock.now() + timedelta(seconds=30))
    first_row = next(row for row in await _rows(db, event_ids[0]) if row.consumer == "scoring")

    async with db.session() as session:
        await outbox._requeue(session, redis, identifier, [first_row.id])  # type: ignore[list-item]
        await session.commit()

    job = deserialize_job(await redis.get(ARQ_JOB_KEY_PREFIX + identifier))
    assert [envelope["id"] for envelope in job["a"][0]] == event_ids
    await db.dispose()
    await redis.aclose()


async def test_sweep_deletes_rows_whose_job_finished(own: Environment) -> None:
    settings, db, redis, outbox = await _setup(own)
    event_id = uuid.uuid4().hex
    await _publish(db, outbox, event_id)
    await outbox.relay_pending(db, redis)

    assert await eventually(lambda: _sequencer_row_retired(own, db, redis, outbox, event_id), timeout_s=30)
    await db.dispose()
    await redis.aclose()


async def test_failed_job_is_retried_after_cool_down(own: Environment) -> None:
    settings, db, redis, outbox = await _setup(own)
    event_id = uuid.uuid4().hex
    await _publish(db, outbox, event_id)
    await outbox.relay_pending(db, redis)
    # What the sweep records when a consumer job failed its last try, for instance through a long
    # database outage: the job's rows stay, failed.
    async with db.session() as session:
        await session.exec(
            update(OutboxMessage).where(OutboxMessage.event_id == event_id).values(state="failed", enqueued_at=clock.now())
        )
        await session.commit()

    too_soon = await outbox.retry_failed(db, redis)
    clock.travel_to(clock.now() + FAILED_RETRY_AFTER + timedelta(seconds=1))
    retried = await outbox.retry_failed(db, redis)
    rows = {row.consumer: row for row in await _rows(db, event_id)}

    assert too_soon == 0
    assert retried == len(rows)
    assert {row.state for row in rows.values()} == {"enqueued"}
    assert rows["sequencer"].job_id is not None and rows["sequencer"].job_id.endswith(":retry1")

    assert await eventually(lambda: _sequencer_row_retired(own, db, redis, outbox, event_id), timeout_s=30)
    await db.dispose()
    await redis.aclose()


def test_failed_retry_delay_doubles_up_to_its_cap() -> None:
    delays = [failed_retry_delay(attempts) for attempts in (1, 2, 3, 10)]

    assert delays == [FAILED_RETRY_AFTER, FAILED_RETRY_AFTER * 2, FAILED_RETRY_AFTER * 4, FAILED_RETRY_MAX]


class _CountingOutbox(Outbox):
    """An outbox that counts its sweeps."""

    sweeps = 0

    async def sweep_enqueued(self, db: Database, redis: ArqRedis) -> dict[str, int]:
        self.sweeps += 1
        return await super().sweep_enqueued(db, redis)


async def test_sweep_runs_once_per_interval(own: Environment) -> None:
    settings, db, redis, _ = await _setup(own)
    outbox = _CountingOutbox(OutboxMessage, service="contacts", namespace=settings.namespace)
    stop = asyncio.Event()
    loop = asyncio.create_task(outbox.run(db, redis, interval_s=1.5, sweep=True, stop=stop))

    async def swept(times: int) -> bool:
        return outbox.sweeps == times

    assert await eventually(lambda: swept(1), timeout_s=5)

    event_ids = [uuid.uuid4().hex for _ in range(8)]
    for event_id in event_ids:
        await _publish(db, outbox, event_id)
        outbox.wake()

        async def relayed(event_id: str = event_id) -> bool:
            return {row.state for row in await _rows(db, event_id)} == {"enqueued"}

        assert await eventually(relayed, timeout_s=5)
    swept_while_waking = outbox.sweeps

    assert await eventually(lambda: swept(swept_while_waking + 1), timeout_s=5)
    await stop_task(loop, stop, name="relay")
    assert swept_while_waking <= 2
    await db.dispose()
    await redis.aclose()


async def test_linger_joins_commits_into_one_job(own: Environment) -> None:
    settings, db, redis, _ = await _setup(own)
    outbox = _outbox(settings)
    stop = asyncio.Event()
    loop = asyncio.create_task(outbox.run(db, redis, interval_s=5, sweep=False, stop=stop, linger_s=0.6))
    first, *following = [uuid.uuid4().hex for _ in range(5)]

    async def job_of(event_id: str) -> str | None:
        rows = {row.consumer: row for row in await _rows(db, event_id)}
        return rows["scoring"].job_id if "scoring" in rows else None

    await _publish(db, outbox, first)
    outbox.wake()
    assert await eventually(lambda: job_of(first), timeout_s=5)
    for event_id in following:
        await _publish(db, outbox, event_id)
        outbox.wake()
    assert await eventually(lambda: job_of(following[-1]), timeout_s=5)
    await stop_task(loop, stop, name="relay")

    # The first commit after a quiet moment went out alone, at once. The next four came within the
    # linger and went out together.
    assert await job_of(first) == job_id(settings.namespace, "evts", "scoring", first, first, "1")
    jobs = {await job_of(event_id) for event_id in following}
    assert jobs == {job_id(settings.namespace, "evts", "scoring", following[0], following[-1], "4")}
    await db.dispose()
    await redis.aclose()
