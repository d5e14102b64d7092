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

from services.kit.queue import queue_name
from services.kit.settings import SERVICE_NAMES

# Both the relay after a commit and the sweep run within this time, so an empty queue that stays
# empty this long means the work is done rather than between two hops.
SETTLE_S = 1.5
POLL_S = 0.25


class Backlog:
    """Due jobs on the queues of one platform (namespace)."""

    def __init__(self, redis_url: str | None, namespace: str) -> None:
        self.redis = Redis.from_url(redis_url) if redis_url else None
        self.queues = [queue_name(namespace, service) for service in SERVICE_NAMES]

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()

    async def due_jobs(self) -> int:
        """Return the number of queued jobs due now, over every service's queue (0 without Redis)."""
        if self.redis is None:
            return 0
        now_ms = int(time.time() * 1000)
        async with self.redis.pipeline(transaction=False) as pipe:
            for queue in self.queues:
                pipe.zcount(queue, "-inf", now_ms)
            counts = await pipe.execute()
        return int(sum(counts))

    async def wait_until_idle(
        self, progress: Callable[[int], None] | None = None, *, settle_s: float | None = None, timeout_s: float = 3600.0
    ) -> None:
        """Wait until no job is due and none appears for `settle_s` (SETTLE_S by default); report the count on each poll."""
        settle = SETTLE_S if settle_s is None else settle_s
        deadline = time.monotonic() + timeout_s
        idle_since: float | None = None
        while True:
            due = await self.due_jobs()
            if progress is not None:
                progress(due)
            now = time.monotonic()
            if due:
                idle_since = None
            elif idle_since is None:
                idle_since = now
            elif now - idle_since >= settle:
                return
            if now > deadline:
                raise TimeoutError(f"the platform still had {due} queued jobs after {timeout_s:.0f} s")
            await asyncio.sleep(POLL_S)
