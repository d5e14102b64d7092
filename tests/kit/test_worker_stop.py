"""A worker whose Redis server is gone still runs its service's shutdown hooks when it stops."""

import asyncio
import contextlib
import uuid
from pathlib import Path
from typing import Any

from arq.connections import RedisSettings
from arq.worker import func

from services.kit.worker import Worker
from tests.sequencer.test_redis_restart import PrivateRedis


async def noop(ctx: dict[str, Any]) -> None:
    return None


async def test_stop_runs_hooks_after_redis_died(tmp_path: Path) -> None:
    redis_server = PrivateRedis(tmp_path)
    redis_server.start()
    stopped: list[str] = []

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        stopped.append("hooks ran")

    worker = Worker(
        functions=[func(noop, name="noop")],
        redis_settings=RedisSettings.from_dsn(redis_server.url),
        queue_name=f"stop-test-{uuid.uuid4().hex[:8]}",
        on_shutdown=on_shutdown,
        handle_signals=False,
        poll_delay=0.05,
    )
    running = asyncio.create_task(worker.main())
    try:
        while worker._pool is None:
            await asyncio.sleep(0.05)
        redis_server.kill()
        # arq's main loop ends with the error Redis gives it, or keeps failing until cancelled.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(running), timeout=1.0)
        running.cancel()
        with contextlib.suppress(BaseException):
            await running

        await worker.close()
    finally:
        redis_server.stop()

    assert stopped == ["hooks ran"]
    assert worker._pool is None
