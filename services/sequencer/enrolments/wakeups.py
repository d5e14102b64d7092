"""Waking the worker when a step run falls due: one deferred arq job per due time.

The job only wakes a worker; the step run in the database is what is due. Each job id is
`<namespace>:step:<step run id>:<wake revision>`, so enqueueing the same wake-up twice is a no-op,
and a step whose due time moved gets a new job. Jobs are enqueued after the commit that scheduled
the step, so a job never runs before its step run exists. A step that is due at once and that the
scheduling worker runs itself right after that commit (the email after a wait) gets no job.
"""

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from arq.connections import ArqRedis
from sqlalchemy import event
from sqlalchemy.orm import Session
from sqlmodel.ext.asyncio.session import AsyncSession

from services.kit import clock
from services.kit.logging import get_logger
from services.kit.queue import job_id, queue_name

RUN_STEP_JOB = "run_step"

_PENDING = "sequencer.wakeups"
_QUEUE = "sequencer.queue"
_tasks: set[asyncio.Task[None]] = set()

log = get_logger(__name__)


@dataclass(frozen=True)
class Wakeup:
    step_run_id: int
    revision: int
    due_at: datetime


def attach_queue(session: AsyncSession, redis: ArqRedis | None, namespace: str) -> None:
    """Let wake-ups scheduled in this session be enqueued on `redis` once it commits."""
    session.info[_QUEUE] = (redis, namespace)


def wake_after_commit(session: AsyncSession, wakeup: Wakeup) -> None:
    session.info.setdefault(_PENDING, []).append(wakeup)


def cancel_wakeup(session: AsyncSession, step_run_id: int) -> None:
    """Drop the wake-ups of a step run scheduled in this session, because this worker runs it itself after the commit."""
    pending: list[Wakeup] = session.info.get(_PENDING, [])
    session.info[_PENDING] = [wakeup for wakeup in pending if wakeup.step_run_id != step_run_id]


def step_job_id(namespace: str, wakeup: Wakeup) -> str:
    return job_id(namespace, "step", str(wakeup.step_run_id), str(wakeup.revision))


async def enqueue_wakeups(redis: ArqRedis, namespace: str, wakeups: list[Wakeup]) -> None:
    """Enqueue one deferred job per wake-up; a failure is logged, because the sweep finds the step anyway."""
    for wakeup in wakeups:
        try:
            await redis.enqueue_job(
                RUN_STEP_JOB,
                wakeup.step_run_id,
                _job_id=step_job_id(namespace, wakeup),
                _queue_name=queue_name(namespace, "sequencer"),
                _defer_until=clock.to_wall_clock(wakeup.due_at),
            )
        except Exception as error:  # noqa: BLE001 - Redis is only the wake-up; the sweep covers a lost job
            log.warning("wakeup.enqueue_failed", step_run_id=wakeup.step_run_id, error=repr(error))
            return


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    wakeups: list[Wakeup] = session.info.pop(_PENDING, [])
    queue: tuple[Any, str] | None = session.info.get(_QUEUE)
    if not wakeups or queue is None or queue[0] is None:
        return
    task = asyncio.get_running_loop().create_task(enqueue_wakeups(queue[0], queue[1], wakeups))
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(_PENDING, None)


async def flush_enqueues() -> None:
    """Wait until the wake-ups of committed sessions are in Redis (tests use it before draining a queue)."""
    while _tasks:
        await asyncio.gather(*list(_tasks), return_exceptions=True)
