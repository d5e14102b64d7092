"""Running a service's real arq worker inside the test process until no job is due."""

import asyncio
import contextlib

from arq.utils import timestamp_ms
from arq.worker import get_kwargs

from services.cli import services as registry
from services.kit.settings import ServiceSettings
from services.kit.worker import Worker


async def drain_queue(service: str, settings: ServiceSettings | None = None, *, poll_s: float = 0.01) -> Worker:
    """Run the service's worker until its queue contains no job that is due or running, then stop it.

    arq's own burst mode waits for the queue to be empty, and a job deferred into the future (a
    retry with backoff, a wake-up left by an earlier test) would keep it running forever; here
    only the jobs due now count. A running job stays in the queue until it finishes.
    """
    worker = Worker(**{**get_kwargs(registry.worker_settings(service, settings)), "poll_delay": poll_s, "handle_signals": False})
    running = asyncio.create_task(worker.main())
    try:
        while True:
            await asyncio.sleep(poll_s)
            if running.done():
                running.result()
            if worker.pool is None:  # still connecting
                continue

            due = await worker.pool.zcount(worker.queue_name, "-inf", timestamp_ms())
            if due == 0:
                await asyncio.gather(*worker.tasks.values())
                return worker
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await worker.close()
