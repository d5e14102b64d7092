"""The worker's jobs: the deferred `run_step` wake-up, the sweep for due steps, and the heartbeat.

The sweep is what makes the database the system of record. Every interval it takes the step runs
that are due and runs them itself. A step whose job vanished from Redis (flush, restart), or whose
job is stuck on a killed worker, therefore still runs. Both hand their step runs to the process's
batcher (see `dispatch`), and the claims in `runner` and `batch` make them safe to run the same
step at the same time.
"""

import asyncio
from typing import Any

from arq.worker import Function, func
from sqlalchemy import and_
from sqlmodel import col, select

from services.kit import clock
from services.kit.logging import get_logger
from services.sequencer.enrolments.dispatch import batcher_of
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


async def due_step_runs(runtime: Runtime, limit: int) -> list[int]:
    """Return the ids of scheduled step runs of active sequences that are due, earliest first."""
    query = (
        select(StepRun.id)
        .join(Enrolment, col(Enrolment.id) == col(StepRun.enrolment_id))
        .join(Sequence, and_(col(Sequence.id) == col(Enrolment.sequence_id), col(Sequence.status) == "active"))
        .where(col(StepRun.state) == "scheduled", col(StepRun.due_at) <= clock.now())
        .order_by(col(StepRun.due_at), col(StepRun.id))
        .limit(limit)
    )
    async with runtime.db.session() as session:
        return [row for row in (await session.exec(query)).all() if row is not None]


async def sweep_once(runtime: Runtime) -> dict[str, int]:
    """Run every due step run of one batch; return how many ended each way."""
    ids = await due_step_runs(runtime, runtime.settings.sweep_batch_size)
    batcher = batcher_of(runtime)
    outcomes = await asyncio.gather(*(batcher.run(step_run_id) for step_run_id in ids))
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome] = counts.get(outcome, 0) + 1
    if ids:
        log.debug("sweep.ran", **counts)
    return counts


async def sweep_due_steps(ctx: Context) -> None:
    """Periodic task: run the due step runs, batch after batch while whole batches are due."""
    runtime: Runtime = ctx["runtime"]
    while True:
        counts = await sweep_once(runtime)
        ran = sum(counts.values())
        # Steps another worker is sending stay due until it finishes; they do not make a new batch.
        progressed = ran - counts.get("in_flight", 0) - counts.get("busy", 0) - counts.get("paused", 0)
        if ran < runtime.settings.sweep_batch_size or progressed == 0:
            return


async def heartbeat(ctx: Context) -> None:
    """Periodic task: tell other workers this one is alive."""
    await beat(ctx["runtime"])
