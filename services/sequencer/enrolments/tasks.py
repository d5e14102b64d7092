"""The worker's jobs: the deferred `run_step` wake-up, the sweep for due steps, and the heartbeat.

The sweep is what makes the database the system of record. Every interval it takes the step runs
that are due, claims them from other workers' sweeps (see `claims`), and runs them itself. A step
whose job vanished from Redis (flush, restart), or whose job is stuck on a killed worker,
therefore still runs. Jobs and sweeps hand their step runs to the process's batcher (see
`dispatch`), and the row locks in `runner` and `batch` make it safe for both to run one step at
the same time.
"""

import asyncio
from collections.abc import Collection
from datetime import datetime
from typing import Any

from arq.worker import Function, func
from sqlalchemy import and_, literal, tuple_
from sqlmodel import col, select

from services.kit import clock
from services.kit.db import UTCDateTime
from services.kit.logging import get_logger
from services.sequencer.enrolments.claims import claim, release
from services.sequencer.enrolments.dispatch import CONCURRENT_BATCHES, batcher_of
from services.sequencer.enrolments.models import Enrolment, StepRun
from services.sequencer.enrolments.runtime import Runtime, beat
from services.sequencer.enrolments.wakeups import RUN_STEP_JOB
from services.sequencer.sequences.models import Sequence

Context = dict[str, Any]

log = get_logger(__name__)


async def run_step_job(ctx: Context, step_run_id: int) -> str:
    """Run as the deferred job `run_step`: run the step run, with the others due now, if it is due."""
    return await batcher_of(ctx["runtime"]).run(step_run_id)


def run_step_function() -> Function:
    return func(run_step_job, name=RUN_STEP_JOB, max_tries=1, keep_result=3600, timeout=120)


async def due_step_runs(
    runtime: Runtime, limit: int, *, after: tuple[datetime, int] | None = None, skip: Collection[int] = ()
) -> list[tuple[int, datetime]]:
    """Return the id and due time of scheduled step runs of active sequences that are due, earliest first.

    With `after`, it returns only the step runs after that (due time, id) pair in this order. It
    never returns the ids in `skip`.
    """
    query = (
        select(StepRun.id, StepRun.due_at)
        .join(Enrolment, col(Enrolment.id) == col(StepRun.enrolment_id))
        .join(Sequence, and_(col(Sequence.id) == col(Enrolment.sequence_id), col(Sequence.status) == "active"))
        .where(col(StepRun.state) == "scheduled", col(StepRun.due_at) <= clock.now())
        .order_by(col(StepRun.due_at), col(StepRun.id))
        .limit(limit + len(skip))
    )
    if after is not None:
        query = query.where(tuple_(col(StepRun.due_at), col(StepRun.id)) > tuple_(literal(after[0], UTCDateTime()), literal(after[1])))
    async with runtime.db.session() as session:
        rows = (await session.exec(query)).all()  # type: ignore[call-overload]
    return [(step_run_id, due_at) for step_run_id, due_at in rows if step_run_id not in skip][:limit]


async def sweep_once(runtime: Runtime) -> dict[str, int]:
    """Run the due step runs of one batch that no other sweep holds; return how many ended each way."""
    due = await due_step_runs(runtime, runtime.settings.sweep_batch_size)
    return await _run_claimed(runtime, await claim(runtime, [step_run_id for step_run_id, _ in due]))


async def _run_claimed(runtime: Runtime, ids: list[int]) -> dict[str, int]:
    try:
        return await _run_all(runtime, ids)
    finally:
        await release(runtime, ids)


async def _run_all(runtime: Runtime, ids: list[int]) -> dict[str, int]:
    batcher = batcher_of(runtime)
    outcomes = await asyncio.gather(*(batcher.run(step_run_id) for step_run_id in ids))
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome] = counts.get(outcome, 0) + 1
    if ids:
        log.debug("sweep.ran", **counts)
    return counts


async def sweep_due_steps(ctx: Context) -> None:
    """Periodic task: run the due step runs, batch after batch while whole batches are due.

    The next batch is read while the one before it still sends, up to `CONCURRENT_BATCHES` at once.
    Waiting for each batch to finish first left the SMTP connections idle while the next one was
    claimed and rendered. In the sending benchmark, where 1,000 emails fall due at once, that was
    about a third of the time.
    """
    runtime: Runtime = ctx["runtime"]
    size = runtime.settings.sweep_batch_size
    last: tuple[datetime, int] | None = None
    running: set[asyncio.Task[dict[str, int]]] = set()
    try:
        while True:
            # The batches still running are left out by their place in the order, and the steps they
            # chained (the email after a wait) by `runtime.running`.
            due = await due_step_runs(runtime, size, after=last, skip=set(runtime.running))
            if due:
                last = (due[-1][1], due[-1][0])
                # Step runs that another worker's sweep claimed are left to it, and the next page is read at once.
                claimed = await claim(runtime, [step_run_id for step_run_id, _ in due])
                if claimed:
                    running.add(asyncio.create_task(_run_claimed(runtime, claimed)))
            if len(due) < size:
                break

            if len(running) >= CONCURRENT_BATCHES:
                done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                # Steps that another worker is sending stay due until it finishes, so they do not make a new batch.
                if not any(_progressed(task) for task in done):
                    break
    except BaseException:
        for task in running:
            task.cancel()
        raise
    await asyncio.gather(*running)


def _progressed(task: "asyncio.Task[dict[str, int]]") -> bool:
    """Return whether a finished sweep batch ended any step run, rather than finding them all taken."""
    if task.cancelled():
        return False
    error = task.exception()
    if error is not None:
        log.error("sweep.batch_failed", error=repr(error))
        return False
    counts = task.result()
    return sum(counts.values()) > counts.get("in_flight", 0) + counts.get("busy", 0) + counts.get("paused", 0)


async def heartbeat(ctx: Context) -> None:
    """Periodic task: tell other workers this one is alive."""
    await beat(ctx["runtime"])
