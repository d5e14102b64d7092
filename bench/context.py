"""The run context every scenario shares: the running platform, an API client, its databases and the progress display."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from rich.progress import Progress, TaskID

from bench.results import Report
from bench.sizes import Scale
from bench.stack import Stack
from services.cli.demo.client import DemoClient
from services.kit.db import Database

POLL_S = 0.25
# A wait fails when its count has not moved for this long: the platform is stuck, not slow.
STALL_S = 180.0


class StalledError(RuntimeError):
    """A count the benchmark waits for stopped moving before it reached its total."""


@dataclass
class RunContext:
    scale: Scale
    stack: Stack
    client: DemoClient
    scoring: Database
    sequencer: Database
    report: Report
    progress: Progress
    # Contact ids by email, read from the per-event results of the event batches.
    contact_ids_by_email: dict[str, str] = field(default_factory=dict)

    # Start of the run (time.monotonic), for the line printed when each scenario finishes.
    started: float = field(default_factory=time.monotonic)

    def done(self, what: str) -> None:
        """Print that a scenario finished, so a log that cannot show the progress bars still shows it."""
        self.progress.console.print(f"{what} done at {time.monotonic() - self.started:.0f} s")

    def task(self, description: str, total: float) -> TaskID:
        return self.progress.add_task(description, total=total)

    async def wait_for(
        self, count: Callable[[], Awaitable[int]], total: int, task: TaskID, *, what: str
    ) -> None:
        """Poll `count` until it reaches `total`, showing progress; raise StalledError if it stops moving."""
        last, last_change = -1, time.monotonic()
        while True:
            done = await count()
            self.progress.update(task, completed=done)
            if done >= total:
                return
            if done != last:
                last, last_change = done, time.monotonic()
            elif time.monotonic() - last_change > STALL_S:
                raise StalledError(f"{what}: {done} of {total} after no change for {STALL_S:.0f} s; see {self.stack.config.data_dir / 'logs'}")
            await asyncio.sleep(POLL_S)

