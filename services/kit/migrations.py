"""Alembic migrations of one service, run from code so no `alembic.ini` is needed.

Each service keeps its revisions in `services/<service>/migrations/`. Its `env.py` calls
`run_migrations` with the service's metadata; `upgrade` applies every revision to a database URL.
"""

import asyncio

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData, pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine


def alembic_config(service: str, database_url: str) -> Config:
    """Build the Alembic configuration of one service for one database."""
    config = Config()
    config.set_main_option("script_location", f"services.{service}:migrations")
    config.set_main_option("version_table", "alembic_version")
    config.attributes["database_url"] = database_url
    return config


def upgrade(service: str, database_url: str, revision: str = "head") -> None:
    """Apply the service's migrations up to `revision` (blocking; call from a thread in async code)."""
    command.upgrade(alembic_config(service, database_url), revision)


def _configure(connection: Connection, metadata: MetaData) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_online(url: str, metadata: MetaData) -> None:
    engine = create_async_engine(url, poolclass=pool.NullPool)
    async with engine.connect() as connection:
        await connection.run_sync(_configure, metadata)
    await engine.dispose()


def run_migrations(metadata: MetaData) -> None:
    """Entry point for a service's `env.py`."""
    url = context.config.attributes.get("database_url") or context.config.get_main_option("sqlalchemy.url")
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=metadata, literal_binds=True, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    asyncio.run(_run_online(url, metadata))


def make_revision(service: str, message: str) -> None:
    """Autogenerate a new revision of a service from the difference between its models and head.

    The comparison runs against a scratch SQLite database brought up to head, so no server is needed.
    Read the generated file before committing it: autogenerate misses some changes (renames, server
    defaults) and a migration must work on PostgreSQL and SQLite alike.
    """
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite+aiosqlite:///{Path(folder) / 'scratch.db'}"
        upgrade(service, url)
        config = alembic_config(service, url)
        command.revision(config, message=message, autogenerate=True)


async def ensure_database(database_url: str) -> None:
    """Create the service's database when it does not exist (PostgreSQL) or its folder (SQLite)."""
    from pathlib import Path

    import asyncpg
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        return

    connection = await asyncpg.connect(
        host=url.host, port=url.port or 5432, user=url.username, password=url.password, database="postgres"
    )
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", url.database)
        if not exists:
            # Identifiers cannot be bound as parameters; quote the name as PostgreSQL does.
            quoted = '"' + str(url.database).replace('"', '""') + '"'
            await connection.execute(f"CREATE DATABASE {quoted}")
    finally:
        await connection.close()
