"""The platform's queued work, which tells the demo when the workers have caught up.

The public API accepts an import or an event batch long before scoring and the sequencer have
applied it. No public route reports that backlog, so the demo reads the length of each service's
arq queue in Redis: the jobs that are due now (deferred steps of later days are not counted).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from redis.asyncio import Redis

from services.cli.demo.errors import DemoError
from services.kit.queue import queue_name
from services.kit.settings import SERVICE_NAMES

# Both the relay after a commit and the sweep run within this time, so an empty queue that stays
# empty this long means the work is done rather than between two hops.
SETTLE_S = 1.5
POLL_S = 0.1
STALL_S = 600.0


class BacklogStalled(DemoError):
    """The platform's queued work stopped moving, so waiting for it would never end."""


class Backlog:
    """Due jobs on the queues of one platform (namespace)."""

    def __init__(self, redis_url: str, namespace: str) -> None:
        self.redis = Redis.from_url(redis_url)
        self.queues = [queue_name(namespace, service) for service in SERVICE_NAMES]

    async def close(self) -> None:
        await self.redis.aclose()

    async def due_jobs(self) -> int:
        """Return the number of queued jobs due now, over every service's queue."""
        now_ms = int(time.time() * 1000)
        async with self.redis.pipeline(transaction=False) as pipe:
            for queue in self.queues:
                pipe.zcount(queue, "-inf", now_ms)
            counts = await pipe.execute()
        return int(sum(counts))

    async def wait_until_idle(
        self,
        progress: Callable[[int], None] | None = None,
        *,
        activity: Callable[[], int] | None = None,
        settle_s: float | None = None,
        stall_s: float = STALL_S,
    ) -> None:
        """Wait until no job is due and none appears for `settle_s` (SETTLE_S by default).

        `activity` returns a value that changes with work done outside the queues, such as the
        SMTP sink folder's modification time: it must stay still for `settle_s` too. The
        sequencer's sweep, for one, sends steps that fell due when the clock moved without any
        queued job. `progress` gets the count of due jobs on each poll. Raises BacklogStalled when
        jobs are due but neither value has changed for `stall_s`, because a busy platform changes
        one of them every few seconds.
        """
        settle = SETTLE_S if settle_s is None else settle_s
        quiet_since: float | None = None
        last_state, last_change = (-1, -1), time.monotonic()
        while True:
            due = await self.due_jobs()
            state = (due, activity() if activity is not None else 0)
            if progress is not None:
                progress(due)
            now = time.monotonic()
            if state != last_state:
                last_state, last_change, quiet_since = state, now, None
            elif due and now - last_change > stall_s:
                raise BacklogStalled(f"{due} queued jobs have not moved for {stall_s:.0f} s; see the logs of the platform's workers")

            if due:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = now
            elif now - quiet_since >= settle:
                return
            await asyncio.sleep(POLL_S)
