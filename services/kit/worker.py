"""The arq worker every service runs beside its API.

`build_worker_settings` returns the class that `run_worker` reads. On start the worker opens the
service's database and clients, and runs the outbox relay and sweep and any periodic tasks of the
service in the background; on stop it closes them. Jobs get the database as `ctx["db"]`, the
clients as `ctx["clients"]`, the settings as `ctx["settings"]` and the outbox as `ctx["outbox"]`.
"""

import asyncio
import signal
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import uvloop
from arq.worker import Function, get_kwargs
from arq.worker import Worker as ArqWorker
from redis.exceptions import RedisError

from services.kit.db import Database
from services.kit.http import ServiceClient
from services.kit.logging import get_logger
from services.kit.outbox import Outbox, stop_task
from services.kit.queue import deserialize_job, queue_name, redis_settings, serialize_job
from services.kit.settings import ServiceSettings

log = get_logger(__name__)

Context = dict[str, Any]
Periodic = Callable[[Context], Awaitable[None]]


class Worker(ArqWorker):
    """arq's worker, whose stop runs the service's shutdown hooks even when Redis is gone.

    arq's own stop waits for the running jobs with a gather that re-raises their errors, then
    deletes its health-check key, and only then calls `on_shutdown`. When Redis drops, which also
    ends arq's main loop, either step raised, so the hooks never ran. A send that had begun its
    final dot was then cut off as the process exited, and its email was lost.
    """

    async def close(self) -> None:
        if not self._handle_signals:
            self.handle_sig(signal.SIGUSR1)
        if not self._pool:
            return

        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        try:
            await self.pool.delete(self.health_check_key)
        except (RedisError, OSError) as error:
            log.warning("worker.health_check_not_deleted", error=repr(error))
        try:
            if self.on_shutdown:
                await self.on_shutdown(self.ctx)
        finally:
            try:
                await self.pool.close(close_connection_pool=True)
            except (RedisError, OSError) as error:
                log.warning("worker.redis_close_failed", error=repr(error))
            self._pool = None


def run_worker(settings_cls: type) -> Worker:
    """Run a worker built from a class of `build_worker_settings` until it stops.

    The worker runs on uvloop, as uvicorn runs the APIs: a worker spends much of its time in the
    event loop between round trips, which uvloop runs in C.
    """
    asyncio.set_event_loop(uvloop.new_event_loop())
    worker = Worker(**get_kwargs(settings_cls))
    worker.run()
    return worker


async def _repeat(name: str, task: Periodic, ctx: Context, interval_s: float, stop: asyncio.Event) -> None:
    """Run `task` every `interval_s`, counted from the start of each run.

    Counted from the end, a sweep that spent 0.8 s sending a batch looked for due steps again only
    1.3 s after its previous look, and every step that fell due meanwhile waited that long. A tenth
    of the interval is always left between runs.
    """
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        started = loop.time()
        try:
            await task(ctx)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - a periodic task must survive outages and retry
            log.warning("worker.periodic_failed", task=name, error=repr(error))
        await asyncio.sleep(pause_after_run(interval_s, loop.time() - started))


def pause_after_run(interval_s: float, ran_s: float) -> float:
    """Return how long to wait after a run of `ran_s` seconds so the next starts an interval after it."""
    return max(interval_s - ran_s, interval_s / 10)


def build_worker_settings(
    settings: ServiceSettings,
    *,
    functions: Sequence[Function],
    outbox: Outbox | None = None,
    clients: Sequence[str] = (),
    periodic: Sequence[Periodic] = (),
    on_startup: Sequence[Callable[[Context], Awaitable[None]]] = (),
    on_shutdown: Sequence[Callable[[Context], Awaitable[None]]] = (),
    max_jobs: int = 20,
) -> type:
    """Return an arq `WorkerSettings` class for one service."""

    async def startup(ctx: Context) -> None:
        ctx["settings"] = settings
        ctx["db"] = Database(settings.database_url, pool_size=settings.database_pool_size)
        ctx["outbox"] = outbox
        ctx["clients"] = {
            name: ServiceClient(
                name, settings.url_of(name), internal_token=settings.internal_token, timeout_s=settings.http_timeout_s
            )
            for name in clients
        }
        interval_s = settings.sweep_interval_ms / 1000
        stop = ctx["stop_background"] = asyncio.Event()
        tasks = {}
        if outbox is not None:
            outbox.listen_for_commits()
            tasks["outbox.relay"] = asyncio.create_task(
                outbox.run(
                    ctx["db"], ctx["redis"], interval_s=interval_s, sweep=True, stop=stop, linger_s=settings.relay_linger_ms / 1000
                )
            )
        for task in periodic:
            tasks[task.__name__] = asyncio.create_task(_repeat(task.__name__, task, ctx, interval_s, stop))
        ctx["background_tasks"] = tasks
        for hook in on_startup:
            await hook(ctx)
        log.info("worker.started", queue=queue_name(settings.namespace, settings.service_name))

    async def shutdown(ctx: Context) -> None:
        tasks = ctx.get("background_tasks", {})
        await asyncio.gather(*(stop_task(task, ctx["stop_background"], name=name) for name, task in tasks.items()))
        # The hooks run once the background loops are stopped, before the database closes.
        for hook in on_shutdown:
            await hook(ctx)
        for client in ctx.get("clients", {}).values():
            await client.aclose()
        if "db" in ctx:
            await ctx["db"].dispose()
        log.info("worker.stopped")

    attributes: dict[str, Any] = {
        "functions": list(functions),
        "queue_name": queue_name(settings.namespace, settings.service_name),
        "redis_settings": redis_settings(settings.redis_url),
        "job_serializer": serialize_job,
        "job_deserializer": deserialize_job,
        "on_startup": startup,
        "on_shutdown": shutdown,
        "max_jobs": max_jobs,
        "job_timeout": 300,
        "keep_result": 3600,
        "poll_delay": 0.05,
        "health_check_interval": 10,
    }
    return type(f"{settings.service_name.title()}WorkerSettings", (), attributes)
