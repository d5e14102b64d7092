"""The transactional outbox: events are rows first and queue jobs second.

A service calls `Outbox.publish` inside the transaction that makes the change, which writes one row
per consuming service. After the commit, the relay takes the pending rows in order and enqueues them
for each consumer as `consume_events` jobs of up to `JOB_BATCH_SIZE` events. A job's id is
deterministic (`<namespace>:evts:<consumer>:<first event id>:<last event id>:<count>`) and is kept on
its rows. The sweep then watches enqueued rows job by job: rows whose job finished are deleted, rows
whose job failed for good are marked failed and logged, and rows whose job vanished from Redis
(restart or flush) are enqueued again under the same id. So an event is never lost between the
database and the queue, and the consumers' idempotency absorbs the rare second delivery.

A job per batch rather than per event is what keeps the queue cheap: each arq job costs several
Redis round trips on both sides and a transaction in the consumer, whatever its size.
"""

import asyncio
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from arq.connections import ArqRedis
from pydantic import BaseModel
from sqlalchemy import JSON, UniqueConstraint, delete, event, update
from sqlalchemy.orm import Session
from sqlmodel import select
from sqlmodel import Field, SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from services.kit import clock
from services.kit.contracts import EventEnvelope
from services.kit.contracts.subscriptions import consumers_of
from services.kit.correlation import current_correlation_id
from services.kit.db import Database, UTCDateTime
from services.kit.deferred_rows import defer_rows
from services.kit.logging import get_logger
from services.kit.queue import (
    ARQ_IN_PROGRESS_KEY_PREFIX,
    ARQ_JOB_KEY_PREFIX,
    ARQ_RESULT_KEY_PREFIX,
    deserialize_job,
    job_id,
    queue_name,
)

CONSUME_EVENT_JOB = "consume_event"
CONSUME_EVENTS_JOB = "consume_events"

# A row enqueued this long ago whose job has no trace in Redis is taken as lost and enqueued again.
LOST_JOB_GRACE = timedelta(seconds=5)
RELAY_BATCH_SIZE = 500
# Events in one consumer job. A consumer applies one batch at a time, so a batch's events share its
# statements and round trips. In the small ingest benchmark on PostgreSQL, 250 instead of 100 raised
# throughput from about 940 to 1,160 events a second, and 500 gained 3% more, within the noise. A
# larger batch holds its contacts' locks longer, and a batch that fails is applied again event by event.
JOB_BATCH_SIZE = 250
# Enqueued rows the sweep looks at in one pass.
SWEEP_BATCH_SIZE = RELAY_BATCH_SIZE * 8
# A consumer job gives up after about five minutes of tries, which a database or network outage can
# outlast. Its rows are then enqueued again after this cool-down, doubled on each failure up to
# FAILED_RETRY_MAX, because the consumer applies each event once however often it arrives.
FAILED_RETRY_AFTER = timedelta(minutes=10)
FAILED_RETRY_MAX = timedelta(hours=6)

log = get_logger(__name__)


def failed_retry_delay(attempts: int) -> timedelta:
    """Return how long rows whose job failed after `attempts` enqueues wait before the next one."""
    return min(FAILED_RETRY_MAX, FAILED_RETRY_AFTER * 2 ** max(0, attempts - 1))


class OutboxColumns(SQLModel):
    """Columns of a service's `outbox` table; each service declares the table on its own base."""

    __table_args__ = (UniqueConstraint("event_id", "consumer", name="uq_outbox_event_consumer"),)

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(max_length=64, index=True)
    consumer: str = Field(max_length=32)
    topic: str = Field(max_length=64)
    envelope: dict[str, Any] = Field(sa_type=JSON)
    state: str = Field(default="pending", max_length=16, index=True)
    created_at: datetime = Field(sa_type=UTCDateTime)
    enqueued_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    attempts: int = 0
    last_error: str | None = None
    # The arq job that carries this row; rows enqueued one per job before batching have none.
    job_id: str | None = Field(default=None, max_length=200, index=True)


class ProcessedEventColumns(SQLModel):
    """Columns of a service's `processed_event` table: the events its consumer has applied."""

    event_id: str = Field(primary_key=True, max_length=64)
    topic: str = Field(max_length=64)
    processed_at: datetime = Field(sa_type=UTCDateTime)


_commit_listeners: list[Callable[[], None]] = []


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    if session.info.pop("outbox_dirty", False):
        for listener in _commit_listeners:
            listener()


class Outbox:
    """Publishing, relaying and sweeping of one service's outbox table."""

    def __init__(self, model: type[OutboxColumns], *, service: str, namespace: str) -> None:
        self.model = model
        self.service = service
        self.namespace = namespace
        self._wake = asyncio.Event()

    def publish(
        self,
        session: AsyncSession,
        topic: str,
        payload: BaseModel | dict[str, Any],
        *,
        event_id: str | None = None,
        occurred_at: datetime | None = None,
    ) -> EventEnvelope:
        """Add an event to the outbox in the caller's transaction, so it leaves only if that commits.

        The rows are written when the transaction commits, so a query in the same transaction does
        not see them.
        """
        body = payload.model_dump(mode="json") if isinstance(payload, BaseModel) else payload
        envelope = EventEnvelope(
            id=event_id or uuid.uuid4().hex,
            topic=topic,
            producer=self.service,
            occurred_at=occurred_at or clock.now(),
            correlation_id=current_correlation_id(),
            payload=body,
        )
        document = envelope.model_dump(mode="json")
        now = clock.now()
        rows = []
        for consumer in consumers_of(topic, producer=self.service):
            rows.append(
                {
                    "event_id": envelope.id,
                    "consumer": consumer,
                    "topic": topic,
                    "envelope": document,
                    "state": "pending",
                    "created_at": now,
                    "enqueued_at": None,
                    "attempts": 0,
                    "last_error": None,
                    "job_id": None,
                }
            )
        # The rows belong to the transaction, as added objects would.
        defer_rows(session, self.model.__table__, rows)  # type: ignore[attr-defined]
        session.info["outbox_dirty"] = True
        return envelope

    def wake(self) -> None:
        """Ask the relay loop of this process to run now (called after a commit that published)."""
        self._wake.set()

    def listen_for_commits(self) -> None:
        _commit_listeners.append(self.wake)

    def _single_job_id(self, event_id: str, consumer: str) -> str:
        return job_id(self.namespace, "evt", event_id, consumer)

    def _batch_job_id(self, consumer: str, rows: list[OutboxColumns]) -> str:
        return job_id(self.namespace, "evts", consumer, rows[0].event_id, rows[-1].event_id, str(len(rows)))

    async def _enqueue_batch(self, redis: ArqRedis, consumer: str, identifier: str, envelopes: list[dict[str, Any]]) -> None:
        await redis.enqueue_job(
            CONSUME_EVENTS_JOB, envelopes, _job_id=identifier, _queue_name=queue_name(self.namespace, consumer)
        )

    async def _enqueue_single(self, redis: ArqRedis, consumer: str, identifier: str, envelope: dict[str, Any]) -> None:
        await redis.enqueue_job(
            CONSUME_EVENT_JOB, envelope, _job_id=identifier, _queue_name=queue_name(self.namespace, consumer)
        )

    async def relay_pending(self, db: Database, redis: ArqRedis) -> int:
        """Enqueue pending rows in batch jobs and mark them enqueued; return how many were relayed."""
        async with db.session() as session:
            query = select(self.model).where(self.model.state == "pending").order_by(self.model.id)
            query = query.limit(RELAY_BATCH_SIZE)
            if db.dialect == "postgresql":
                query = query.with_for_update(skip_locked=True)
            rows = list((await session.exec(query)).all())
            if not rows:
                return 0

            by_consumer: dict[str, list[OutboxColumns]] = {}
            for row in rows:
                by_consumer.setdefault(row.consumer, []).append(row)
            now = clock.now()
            for consumer, consumer_rows in by_consumer.items():
                for start in range(0, len(consumer_rows), JOB_BATCH_SIZE):
                    batch = consumer_rows[start : start + JOB_BATCH_SIZE]
                    identifier = self._batch_job_id(consumer, batch)
                    await self._enqueue_batch(redis, consumer, identifier, [row.envelope for row in batch])
                    await session.exec(
                        update(self.model)
                        .where(self.model.id.in_([row.id for row in batch]))  # type: ignore[union-attr]
                        .values(state="enqueued", enqueued_at=now, job_id=identifier, attempts=self.model.attempts + 1)
                    )
            await session.commit()
        return len(rows)

    async def sweep_enqueued(self, db: Database, redis: ArqRedis) -> dict[str, int]:
        """Retire rows whose job finished and re-enqueue the jobs that vanished from Redis; counts are of rows."""
        counts = {"done": 0, "failed": 0, "requeued": 0}
        columns = (self.model.id, self.model.event_id, self.model.consumer, self.model.job_id, self.model.enqueued_at)
        async with db.session() as session:
            query = select(*columns).where(self.model.state == "enqueued").order_by(self.model.id)
            rows = list((await session.exec(query.limit(SWEEP_BATCH_SIZE))).all())  # type: ignore[call-overload]
            if not rows:
                return counts

            jobs: dict[str, list[Any]] = {}
            for row in rows:
                jobs.setdefault(row.job_id or self._single_job_id(row.event_id, row.consumer), []).append(row)
            async with redis.pipeline(transaction=False) as pipe:
                for identifier in jobs:
                    pipe.get(ARQ_RESULT_KEY_PREFIX + identifier)
                    pipe.exists(ARQ_JOB_KEY_PREFIX + identifier, ARQ_IN_PROGRESS_KEY_PREFIX + identifier)
                replies = await pipe.execute()

            done: list[int] = []
            failed: list[int] = []
            cutoff = clock.now() - LOST_JOB_GRACE
            for index, (identifier, job_rows) in enumerate(jobs.items()):
                result, live = replies[2 * index], replies[2 * index + 1]
                ids = [row.id for row in job_rows]
                if result is not None:
                    if _job_succeeded(result):
                        done.extend(ids)
                        counts["done"] += len(ids)
                    else:
                        failed.extend(ids)
                        counts["failed"] += len(ids)
                        log.error("outbox.delivery_failed", job_id=identifier, consumer=job_rows[0].consumer, events=len(ids))
                elif not live and all(row.enqueued_at is not None and row.enqueued_at < cutoff for row in job_rows):
                    await self._requeue(session, redis, identifier, ids)
                    counts["requeued"] += len(ids)
                    log.warning("outbox.job_requeued", job_id=identifier, consumer=job_rows[0].consumer, events=len(ids))

            if done:
                await session.exec(delete(self.model).where(self.model.id.in_(done)))  # type: ignore[union-attr]
            if failed:
                await session.exec(
                    update(self.model)
                    .where(self.model.id.in_(failed))  # type: ignore[union-attr]
                    .values(state="failed", enqueued_at=clock.now(), last_error="consumer job failed after its last try")
                )
            await session.commit()
        return counts

    async def retry_failed(self, db: Database, redis: ArqRedis) -> int:
        """Enqueue again the rows whose consumer job failed, once their cool-down passed; return how many."""
        now = clock.now()
        async with db.session() as session:
            query = (
                select(self.model)
                .where(self.model.state == "failed", self.model.enqueued_at <= now - FAILED_RETRY_AFTER)
                .order_by(self.model.id)
                .limit(SWEEP_BATCH_SIZE)
            )
            rows = [row for row in (await session.exec(query)).all() if row.enqueued_at <= now - failed_retry_delay(row.attempts)]
            jobs: dict[tuple[str, str], list[OutboxColumns]] = {}
            for row in rows:
                identifier = row.job_id or self._single_job_id(row.event_id, row.consumer)
                jobs.setdefault((row.consumer, identifier), []).append(row)

            for (consumer, identifier), job_rows in jobs.items():
                # A new id, because Redis keeps the failed job's result under the old one for an hour.
                retry_id = f"{identifier}:retry{max(row.attempts for row in job_rows)}"
                await self._enqueue_batch(redis, consumer, retry_id, [row.envelope for row in job_rows])
                await session.exec(
                    update(self.model)
                    .where(self.model.id.in_([row.id for row in job_rows]))  # type: ignore[union-attr]
                    .values(state="enqueued", enqueued_at=now, job_id=retry_id, attempts=self.model.attempts + 1)
                )
                log.warning("outbox.failed_job_retried", job_id=retry_id, consumer=consumer, events=len(job_rows))
            await session.commit()
        return len(rows)

    async def _requeue(self, session: AsyncSession, redis: ArqRedis, identifier: str, ids: list[int]) -> None:
        """Enqueue a vanished job again under its id, rebuilt from all of its rows in their order.

        All rows, not only those this pass saw: the sweep's limit can cut a job in two, and a job
        rebuilt from half its rows would finish with the other half never applied.
        """
        query = select(self.model).where(self.model.id.in_(ids))  # type: ignore[union-attr]
        if (await session.exec(query.limit(1))).one().job_id is not None:
            query = select(self.model).where(self.model.job_id == identifier)
        rows = list((await session.exec(query.order_by(self.model.id))).all())
        if rows[0].job_id is None:
            await self._enqueue_single(redis, rows[0].consumer, identifier, rows[0].envelope)
        else:
            await self._enqueue_batch(redis, rows[0].consumer, identifier, [row.envelope for row in rows])
        await session.exec(
            update(self.model)
            .where(self.model.id.in_([row.id for row in rows]))  # type: ignore[union-attr]
            .values(enqueued_at=clock.now(), attempts=self.model.attempts + 1)
        )

    async def run(
        self,
        db: Database,
        redis: ArqRedis,
        *,
        interval_s: float,
        sweep: bool,
        stop: asyncio.Event | None = None,
        linger_s: float = 0.0,
    ) -> None:
        """Relay (and, in a worker, sweep) until cancelled or `stop` is set, waking early after each commit.

        The relay runs at every wake, but at most once per `linger_s`. A commit soon after a pass
        waits for the rest of the linger, and the commits made meanwhile go out in the same jobs. A
        commit after a quiet moment is relayed at once. A consumer job costs a transaction and several Redis
        round trips whatever its size, so fewer, larger jobs cost the consumers less CPU per event.

        The sweep runs at most once per `interval_s`. Under a steady trickle of commits the loop
        wakes far more often than that. In a profile of the sending benchmark, a sweep at every wake
        cost about as much as the relay, only to retire rows sooner.

        The owner sets `stop` before it cancels the task. A cancellation that a library swallows
        then still ends the loop at the next pass, instead of hanging the shutdown.
        """
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        swept_at = relayed_at = float("-inf")
        while not stop.is_set():
            await _sleep_unless_stopped(relayed_at + linger_s - loop.time(), stop)
            relayed_at = loop.time()
            try:
                while await self.relay_pending(db, redis) == RELAY_BATCH_SIZE and not stop.is_set():
                    pass
                if sweep and not stop.is_set() and loop.time() - swept_at >= interval_s:
                    swept_at = loop.time()
                    await self.sweep_enqueued(db, redis)
                    await self.retry_failed(db, redis)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - the loop must outlive a database or Redis outage
                log.warning("outbox.relay_failed", error=repr(error))
            # asyncio.timeout rather than wait_for: on Python 3.11, wait_for can swallow a
            # cancellation that arrives as the inner wait completes, and shutdown then hangs.
            try:
                async with asyncio.timeout(interval_s):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()


async def _sleep_unless_stopped(seconds: float, stop: asyncio.Event) -> None:
    if seconds <= 0:
        return
    try:
        async with asyncio.timeout(seconds):
            await stop.wait()
    except TimeoutError:
        pass


async def stop_task(task: asyncio.Task[None], stop: asyncio.Event, *, name: str, timeout_s: float = 10.0) -> None:
    """Stop a background loop: set its stop event, cancel it, and wait at most `timeout_s` for it.

    A loop that is still running after the timeout is logged and left behind, so that shutdown
    finishes and releases the database and Redis either way.
    """
    stop.set()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=timeout_s)
    if not done:
        log.warning("task.stop_timed_out", task=name, timeout_s=timeout_s)
    elif not task.cancelled() and task.exception() is not None:
        log.warning("task.failed", task=name, error=repr(task.exception()))


def _job_succeeded(raw_result: bytes) -> bool:
    try:
        return bool(deserialize_job(raw_result).get("s"))
    except ValueError:
        return False
