"""The state a worker runs steps with: database, SMTP pool, signer, outbox, queue, and its identity."""

import asyncio
import socket
import time
import uuid
from collections import OrderedDict
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parseaddr

from arq.connections import ArqRedis
from sqlalchemy import delete, update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from services.kit import clock
from services.kit.db import Database
from services.kit.http import ServiceClient
from services.kit.outbox import Outbox
from services.kit.tokens import TokenSigner
from services.sequencer.db import OutboxMessage
from services.sequencer.dbutil import insert_ignoring_conflict
from services.sequencer.enrolments.models import WorkerHeartbeat
from services.sequencer.sending.smtp import SmtpPool
from services.sequencer.settings import SequencerSettings


def wall_now() -> datetime:
    """Return the wall-clock time, which heartbeats use because they concern processes, not the schedule."""
    return clock.to_wall_clock(clock.now())


class RecentIds:
    """The last `size` ids added, for cheap membership tests."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._ids: OrderedDict[int, None] = OrderedDict()

    def add(self, identifier: int) -> None:
        self._ids[identifier] = None
        if len(self._ids) > self.size:
            self._ids.popitem(last=False)

    def seen(self, identifier: int) -> bool:
        return identifier in self._ids


class Breaker:
    """Skip calls to a service for a while after one failed, so an outage does not slow every send."""

    def __init__(self, pause_s: float) -> None:
        self.pause_s = pause_s
        self._open_until = 0.0

    def closed(self) -> bool:
        return time.monotonic() >= self._open_until

    def trip(self) -> None:
        self._open_until = time.monotonic() + self.pause_s


@dataclass
class Runtime:
    """One worker process's state for running steps."""

    db: Database
    settings: SequencerSettings
    outbox: Outbox
    smtp: SmtpPool
    signer: TokenSigner
    redis: ArqRedis | None = None
    contacts: ServiceClient | None = None
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()[:30]}-{uuid.uuid4().hex[:16]}")
    # Ids of the sent-message rows this process is sending right now.
    in_flight: set[int] = field(default_factory=set)
    # Ids of the step runs this process is running right now (a job and the sweep may both pick one).
    running: set[int] = field(default_factory=set)
    # Step runs this process finished lately, so the job and the sweep that both picked one skip the
    # database the second time.
    finished: RecentIds = field(default_factory=lambda: RecentIds(10_000))
    slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(16))
    write_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # After the contacts service failed to answer a consent check, the local copy decides for 10 s.
    contacts_breaker: Breaker = field(default_factory=lambda: Breaker(10.0))
    # The process's `dispatch.StepBatcher`, created on first use.
    batcher: object | None = None
    # The group commits of `batch` that every batch of the process shares, created on first use.
    groups: object | None = None

    def writing(self) -> AbstractAsyncContextManager[object]:
        """Serialise this process's step transactions on SQLite, which has one writer at a time.

        Waiting here is far cheaper than SQLite's busy handler, which sleeps up to 100 ms between tries.
        PostgreSQL locks rows, so there it returns a no-op context.
        """
        return self.write_lock if self.db.dialect == "sqlite" else nullcontext()

    @property
    def envelope_sender(self) -> str:
        return parseaddr(self.settings.from_address)[1]

    def stale_before(self) -> datetime:
        """Return the wall-clock instant before which a heartbeat means a dead worker."""
        return wall_now() - timedelta(seconds=self.settings.worker_stale_after_s)

    async def close(self) -> None:
        """Close the SMTP connections and retire the heartbeat, so other workers take over at once."""
        await self.smtp.close()
        async with self.db.session() as session:
            await session.exec(delete(WorkerHeartbeat).where(col(WorkerHeartbeat.worker_id) == self.worker_id))  # type: ignore[call-overload]
            await session.commit()


def build_runtime(
    settings: SequencerSettings,
    *,
    db: Database,
    outbox: Outbox | None = None,
    redis: ArqRedis | None = None,
    contacts: ServiceClient | None = None,
) -> Runtime:
    return Runtime(
        db=db,
        settings=settings,
        outbox=outbox or Outbox(OutboxMessage, service="sequencer", namespace=settings.namespace),
        smtp=SmtpPool(settings),
        signer=TokenSigner(settings.tracking_secret_list()),
        redis=redis,
        contacts=contacts,
        # Each running step holds a database connection, so steps leave part of the pool to others.
        slots=asyncio.Semaphore(max(1, min(settings.smtp_connections * 2, settings.database_pool_size))),
    )


async def beat(runtime: Runtime) -> None:
    """Record that this worker is alive."""
    async with runtime.writing(), runtime.db.session() as session:
        await _upsert_heartbeat(session, runtime.worker_id)
        await session.commit()


async def _upsert_heartbeat(session: AsyncSession, worker_id: str) -> None:
    now = wall_now()
    values = {"worker_id": worker_id, "beat_at": now, "started_at": now}
    if await insert_ignoring_conflict(session, WorkerHeartbeat, values) is None:
        await session.exec(
            update(WorkerHeartbeat).where(col(WorkerHeartbeat.worker_id) == worker_id).values(beat_at=now)  # type: ignore[call-overload]
        )
