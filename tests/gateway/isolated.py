"""All four services in process on databases of their own, for tests that write random data.

The property-based API test creates contacts, models, stage definitions and more from random input.
On the session's shared databases that data could change what other tests see, so these apps get
fresh databases (new SQLite files, or new PostgreSQL databases beside the session's) and their own
queue namespace.
"""

import asyncio
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import asyncpg
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from services.cli.services import _load, load_settings
from services.kit.migrations import ensure_database, upgrade
from services.kit.settings import SERVICE_NAMES
from tests.support.apps import route_in_process


def _database_url(service: str, folder: Path, suffix: str) -> str:
    shared = make_url(os.environ[f"{service.upper()}_DATABASE_URL"])
    if shared.get_backend_name() == "sqlite":
        return f"sqlite+aiosqlite:///{folder / f'{service}.db'}"
    return shared.set(database=f"{shared.database}_{suffix}").render_as_string(hide_password=False)


async def _drop_postgres(urls: list[str]) -> None:
    first = make_url(urls[0])
    connection = await asyncpg.connect(
        host=first.host, port=first.port or 5432, user=first.username, password=first.password, database="postgres"
    )
    try:
        for url in urls:
            await connection.execute(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')
    finally:
        await connection.close()


@asynccontextmanager
async def isolated_services(folder: Path) -> AsyncIterator[dict[str, FastAPI]]:
    """Start every service on fresh, migrated databases; the gateway calls the others in process."""
    suffix = secrets.token_hex(3)
    urls = {service: _database_url(service, folder, suffix) for service in SERVICE_NAMES}
    for service, url in urls.items():
        await ensure_database(url)
        # Alembic runs its own event loop, so it gets a thread of its own.
        await asyncio.to_thread(upgrade, service, url)

    apps: dict[str, FastAPI] = {}
    try:
        async with AsyncExitStack() as stack:
            for service, url in urls.items():
                settings = load_settings(service).model_copy(
                    update={"database_url": url, "namespace": f"{os.environ['NURTURE_NAMESPACE']}-{suffix}"}
                )
                app = _load(f"services.{service}.app:create_app")(settings)
                await stack.enter_async_context(app.router.lifespan_context(app))
                apps[service] = app
            for service in ("contacts", "scoring", "sequencer"):
                route_in_process(apps["gateway"], service, apps[service])
            yield apps
    finally:
        postgres = [url for url in urls.values() if make_url(url).get_backend_name() == "postgresql"]
        if postgres:
            await _drop_postgres(postgres)
