"""Handing due step runs to this process's runners: alone, or gathered into batches.

Wake-up jobs and the sweep both pass their step runs to `StepBatcher.run`. The batcher gathers the
step runs requested while a batch is being prepared into the next batch. A minute in which
thousands of emails fall due thus becomes a few dozen batches instead of thousands of single runs.
A process remembers which step runs it is running and which it finished lately, so a job and the
sweep that pick the same one do not both go to the database.
"""

import asyncio
from itertools import islice

from services.kit.logging import get_logger
from services.sequencer.enrolments.batch import finish_releases, run_batch
from services.sequencer.enrolments.runner import run_step
from services.sequencer.enrolments.runtime import Runtime

# Outcomes after which the step run is no longer scheduled, so running it again can only find that out.
CLOSING_OUTCOMES = frozenset(
    {"finished", "waited", "sent", "sent_unconfirmed", "failed_permanent", "failed_temporary", "skipped", "cancelled",
     "goal_reached", "contact_missing", "render_failed", "no_send_time", "unsubscribed", "bounced", "complained"}
)
# Batches one process prepares or sends at once: one claims while another sends.
CONCURRENT_BATCHES = 2

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


class StepBatcher:
    """Gather the step runs asked for into batches of at most `size`, and run at most two batches at once."""

    def __init__(self, runtime: Runtime, size: int) -> None:
        self.runtime = runtime
        self.size = max(1, size)
        self._waiting: dict[int, list[asyncio.Future[str]]] = {}
        self._turns = asyncio.Semaphore(CONCURRENT_BATCHES)
        self._dispatcher: asyncio.Task[None] | None = None
        self._batches: set[asyncio.Task[None]] = set()
        self._closed = False
        # Step runs that ended inside a batch, and step runs handed back to run alone.
        self.batched = 0
        self.alone = 0

    async def run(self, step_run_id: int) -> str:
        """Run one step run in the next batch, and return its outcome in one word."""
        runtime = self.runtime
        if self._closed:
            return "stopping"
        if step_run_id in runtime.running:
            return "in_flight"
        if runtime.finished.seen(step_run_id):
            return "finished"
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(step_run_id, []).append(future)
        self._wake()
        return await future

    async def close(self) -> None:
        """Stop taking step runs and cancel the running batches, which release the claims not yet handed over.

        The batches run in tasks of their own, so cancelling the jobs and the sweep that wait for
        them would leave them sending while the worker shuts down.
        """
        self._closed = True
        tasks = [task for task in (self._dispatcher, *self._batches) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await finish_releases(self.runtime)
        for futures in self._waiting.values():
            for future in futures:
                future.cancel()
        self._waiting.clear()

    def _wake(self) -> None:
        if self._dispatcher is None:
            self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch())

    async def _dispatch(self) -> None:
        try:
            # The step runs asked for in this turn of the loop (a sweep's, a burst of jobs) go together.
            await asyncio.sleep(0)
            while self._waiting:
                await self._turns.acquire()
                requested = {step_run_id: self._waiting.pop(step_run_id) for step_run_id in list(islice(self._waiting, self.size))}
                task = asyncio.get_running_loop().create_task(self._run(requested))
                self._batches.add(task)
                task.add_done_callback(self._batches.discard)
        finally:
            self._dispatcher = None

    async def _run(self, requested: dict[int, list[asyncio.Future[str]]]) -> None:
        runtime = self.runtime
        ids = [step_run_id for step_run_id in requested if step_run_id not in runtime.running]
        outcomes: dict[int, str] = {step_run_id: "in_flight" for step_run_id in requested if step_run_id not in ids}
        alone: list[int] = []
        marked_running = set(ids)
        runtime.running.update(ids)
        try:
            # The emails that the batch's waits schedule for now run next in the same turn, as a batch
            # of their own, so they do not queue behind steps that fell due after them.
            batch = ids
            while batch:
                result = await run_batch(runtime, batch)
                outcomes.update(result.outcomes)
                self.batched += len(result.outcomes)
                self.alone += len(result.alone)
                alone.extend(result.alone)
                batch = [step_run_id for step_run_id in result.chained if step_run_id not in runtime.running]
                marked_running.update(batch)
                runtime.running.update(batch)
        except asyncio.CancelledError:
            for futures in requested.values():
                for future in futures:
                    future.cancel()
            raise
        except Exception as error:  # noqa: BLE001 - the batch's steps stay due; the sweep runs them again
            log.exception("batch.failed", step_runs=len(ids), error=repr(error))
        finally:
            runtime.running.difference_update(marked_running)
            self._turns.release()

        for step_run_id, outcome in outcomes.items():
            if outcome in CLOSING_OUTCOMES:
                runtime.finished.add(step_run_id)
        if alone:
            answers = await asyncio.gather(*(run_guarded(runtime, step_run_id) for step_run_id in alone))
            outcomes.update(zip(alone, answers, strict=True))
        for step_run_id, futures in requested.items():
            for future in futures:
                if not future.done():
                    future.set_result(outcomes.get(step_run_id, "error"))


def batcher_of(runtime: Runtime) -> StepBatcher:
    """Return the process's batcher, created on first use."""
    if runtime.batcher is None:
        runtime.batcher = StepBatcher(runtime, runtime.settings.sweep_batch_size)
    batcher = runtime.batcher
    assert isinstance(batcher, StepBatcher)
    return batcher


__all__ = ["CLOSING_OUTCOMES", "StepBatcher", "batcher_of", "run_guarded"]
