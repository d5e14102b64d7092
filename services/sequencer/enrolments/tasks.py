"""The worker's jobs: the deferred `run_step` wake-up, the sweep for due steps, and the heartbeat.

The sweep is what makes the database the system of record. Every interval it takes the step runs
that are due and runs them itself. A step whose job vanished from Redis (flush, restart), or whose
job is stuck on a killed worker, therefore still runs. The claims in `runner` make the sweep and the
job safe to run the same step at the same time.
"""

import asyncio
from typing import Any

from arq.worker import Function, func
from sqlalchemy import and_
from sqlmodel import col, select

from services.kit import clock
from services.kit.logging import get_logger
from services.sequencer.enrolments.models import Enrolment, StepRun
from services.sequencer.enrolments.runner import run_step
from services.sequencer.enrolments.runtime import Runtime, beat
from services.sequencer.enrolments.wakeups import RUN_STEP_JOB
from services.sequencer.sequences.models import Sequence

Context = dict[str, Any]

# Outcomes after which the step run is no longer scheduled, so running it again can only find that out.
CLOSING_OUTCOMES = frozenset(
    {"finished", "waited", "sent", "sent_unconfirmed", "failed_permanent", "failed_temporary", "skipped", "cancelled",
     "goal_reached", "contact_missing", "render_failed", "no_send_time", "unsubscribed", "bounced", "complained"}
)

log = get_logger(__name__)


async def run_guarded(runtime: Runtime, step_run_id: int) -> str:
    """Run one step within the process's limit of concurrent steps, logging instead of raising.

    A step that the run schedules for now (the email after a wait) runs next in the same slot, so it
    does not queue behind the steps that became due after it. Returns the first step's outcome.
    """
    if step_run_id in runtime.running:
        return "in_flight"
    if runtime.finished.seen(step_run_id):
        return "finished"
    due_next: list[int] = []
    runtime.running.add(step_run_id)
    try:
        async with runtime.slots:
            outcome = await _run_tracked(runtime, step_run_id, due_next)
            while due_next:
                following = due_next.pop()
                if following not in runtime.running:
                    runtime.running.add(following)
                    await _run_tracked(runtime, following, due_next)
    finally:
        runtime.running.discard(step_run_id)
    return outcome


async def _run_tracked(runtime: Runtime, step_run_id: int, due_next: list[int]) -> str:
    """Run a step already added to `runtime.running`, and remove it from there when done."""
    try:
        outcome = await run_step(runtime, step_run_id, due_next=due_next)
    except Exception as error:  # noqa: BLE001 - one broken step must not stop the others; the sweep retries it
        log.exception("step.failed", step_run_id=step_run_id, error=repr(error))
        return "error"
    finally:
        runtime.running.discard(step_run_id)
    if outcome in CLOSING_OUTCOMES:
        runtime.finished.add(step_run_id)
    return outcome


async def run_step_job(ctx: Context, step_run_id: int) -> str:
    """Run as the deferred job `run_step`: run the step run if it is due."""
    return await run_guarded(ctx["runtime"], step_run_id)


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
    outcomes = await asyncio.gather(*(run_guarded(runtime, step_run_id) for step_run_id in ids))
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
