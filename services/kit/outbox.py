"""The transactional outbox: events are rows first and queue jobs second.

A service calls `Outbox.publish` inside the transaction that makes the change, which writes one row
per consuming service. After the commit, the relay enqueues each row as an arq job with a
deterministic id (`<namespace>:evt:<event id>:<consumer>`). The sweep then watches enqueued rows: a
row whose job finished is deleted, a row whose job failed for good is marked failed and logged, and a
row whose job vanished from Redis (restart or flush) is enqueued again. So an event is never lost
between the database and the queue, and the consumers' idempotency absorbs the rare second delivery.
"""

import asyncio
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from arq.connections import ArqRedis
from pydantic import BaseModel
from sqlalchemy import JSON, UniqueConstraint, delete, event, update
from sqlmodel import select
from sqlalchemy.orm import Session
from sqlmodel import Field, SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from services.kit import clock
from services.kit.contracts import EventEnvelope
from services.kit.contracts.subscriptions import consumers_of
from services.kit.correlation import current_correlation_id
from services.kit.db import Database, UTCDateTime
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

# A row enqueued this long ago whose job has no trace in Redis is taken as lost and enqueued again.
LOST_JOB_GRACE = timedelta(seconds=5)
RELAY_BATCH_SIZE = 500

log = get_logger(__name__)


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
        """Add an event to the outbox in the caller's transaction; it leaves only if that commits."""
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
        for consumer in consumers_of(topic, producer=self.service):
            session.add(
                self.model(
                    event_id=envelope.id,
                    consumer=consumer,
                    topic=topic,
                    envelope=document,
                    created_at=now,
                )
            )
        session.info["outbox_dirty"] = True
        return envelope

    def wake(self) -> None:
        """Ask the relay loop of this process to run now (called after a commit that published)."""
        self._wake.set()

    def listen_for_commits(self) -> None:
        _commit_listeners.append(self.wake)

    def _job_id(self, event_id: str, consumer: str) -> str:
        return job_id(self.namespace, "evt", event_id, consumer)

    async def _enqueue(self, redis: ArqRedis, row: OutboxColumns) -> None:
        await redis.enqueue_job(
            CONSUME_EVENT_JOB,
            row.envelope,
            _job_id=self._job_id(row.event_id, row.consumer),
            _queue_name=queue_name(self.namespace, row.consumer),
        )

    async def relay_pending(self, db: Database, redis: ArqRedis) -> int:
        """Enqueue pending rows and mark them enqueued; return how many were relayed."""
        async with db.session() as session:
            query = select(self.model).where(self.model.state == "pending").order_by(self.model.id)
            query = query.limit(RELAY_BATCH_SIZE)
            if db.dialect == "postgresql":
                query = query.with_for_update(skip_locked=True)
            rows = list((await session.exec(query)).all())
            if not rows:
                return 0

            for row in rows:
                await self._enqueue(redis, row)

            ids = [row.id for row in rows]
            await session.exec(
                update(self.model)
                .where(self.model.id.in_(ids))  # type: ignore[union-attr]
                .values(state="enqueued", enqueued_at=clock.now(), attempts=self.model.attempts + 1)
            )
            await session.commit()
        return len(rows)

    async def sweep_enqueued(self, db: Database, redis: ArqRedis) -> dict[str, int]:
        """Retire rows whose job finished and re-enqueue rows whose job vanished from Redis."""
        counts = {"done": 0, "failed": 0, "requeued": 0}
        async with db.session() as session:
            query = select(self.model).where(self.model.state == "enqueued").order_by(self.model.id)
            rows = list((await session.exec(query.limit(RELAY_BATCH_SIZE * 4))).all())
            if not rows:
                return counts

            ids = [self._job_id(row.event_id, row.consumer) for row in rows]
            async with redis.pipeline(transaction=False) as pipe:
                for identifier in ids:
                    pipe.get(ARQ_RESULT_KEY_PREFIX + identifier)
                    pipe.exists(ARQ_JOB_KEY_PREFIX + identifier, ARQ_IN_PROGRESS_KEY_PREFIX + identifier)
                replies = await pipe.execute()

            done: list[int] = []
            cutoff = clock.now() - LOST_JOB_GRACE
            for index, row in enumerate(rows):
                result, live = replies[2 * index], replies[2 * index + 1]
                if result is not None:
                    if _job_succeeded(result):
                        done.append(row.id)  # type: ignore[arg-type]
                        counts["done"] += 1
                    else:
                        row.state = "failed"
                        row.last_error = "consumer job failed after its last try"
                        counts["failed"] += 1
                        log.error("outbox.delivery_failed", event_id=row.event_id, consumer=row.consumer, topic=row.topic)
                elif not live and row.enqueued_at is not None and row.enqueued_at < cutoff:
                    await self._enqueue(redis, row)
                    row.enqueued_at = clock.now()
                    row.attempts += 1
                    counts["requeued"] += 1
                    log.warning("outbox.job_requeued", event_id=row.event_id, consumer=row.consumer, attempts=row.attempts)

            if done:
                await session.exec(delete(self.model).where(self.model.id.in_(done)))  # type: ignore[union-attr]
            await session.commit()
        return counts

    async def run(
        self, db: Database, redis: ArqRedis, *, interval_s: float, sweep: bool, stop: asyncio.Event | None = None
    ) -> None:
        """Relay (and, in a worker, sweep) until cancelled or `stop` is set, waking early after each commit.

        The owner sets `stop` before it cancels the task. A cancellation that a library swallows
        then still ends the loop at the next pass, instead of hanging the shutdown.
        """
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                while await self.relay_pending(db, redis) == RELAY_BATCH_SIZE and not stop.is_set():
                    pass
                if sweep and not stop.is_set():
                    await self.sweep_enqueued(db, redis)
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
