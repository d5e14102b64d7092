"""Database access for one service: an async engine, sessions, and the service's own table registry.

Every service keeps its tables in its own SQLModel registry (see `service_base`), so the four
services' tables never share metadata even though they live in one Python distribution.
PostgreSQL runs through asyncpg; SQLite (the embedded default) through aiosqlite, in WAL mode with a
busy timeout because a service's API process and its worker write to the same file.
"""

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, DateTime, MetaData, Row, Table, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import registry
from sqlalchemy.types import TypeDecorator
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

# Explicit constraint names keep Alembic migrations identical on PostgreSQL and SQLite.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def service_base(name: str) -> type[SQLModel]:
    """Create the declarative base whose metadata holds one service's tables."""
    service_registry = registry(metadata=MetaData(naming_convention=NAMING_CONVENTION))
    return type(f"{name.title()}Base", (SQLModel,), {}, registry=service_registry)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC that always comes back timezone-aware.

    SQLite has no timezone type and returns naive values; PostgreSQL returns values in the session's
    time zone. Normalising here means no code depends on either database's session time zone.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; pass an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """Create the async engine for a service database URL."""
    if is_sqlite(url):
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine

    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=10,
        # Server-side time zone must never leak into results; UTCDateTime normalises anyway.
        connect_args={"server_settings": {"timezone": "UTC"}, "timeout": 5},
    )
    event.listen(engine.sync_engine, "checkout", _check_alive)
    return engine


def _check_alive(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Check that a pooled PostgreSQL connection still works before the pool hands it out.

    SQLAlchemy's pre-ping on asyncpg wraps its query in BEGIN and ROLLBACK, for PgBouncer's
    transaction mode: three round trips on every checkout. An empty query is one. On
    DisconnectionError the pool discards the connection and opens another, as after a restart.
    """
    try:
        dbapi_connection.run_async(lambda connection: connection.fetchrow(";"))
    except Exception as error:
        raise DisconnectionError(f"pooled connection check failed, so the pool opens a new one: {error!r}") from error


class Database:
    """The engine and session factory of one service."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        self.engine = create_engine(url, pool_size=pool_size)
        self.sessions = async_sessionmaker(self.engine, class_=AsyncSession, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """Open a session; the caller commits. Uncommitted work is rolled back on exit."""
        async with self.sessions() as session:
            yield session

    async def ping(self) -> None:
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


async def insert_new(session: AsyncSession, table: Table, rows: Sequence[dict[str, Any]], *returning: ColumnElement[Any]) -> Sequence[Row[Any]]:
    """Insert the rows whose keys are new, skip the others, and return `returning` of each row inserted.

    The rows go as one executemany of a statement compiled once. SQLAlchemy packs them into
    multi-row INSERTs itself. A statement built with `.values(rows)` is compiled anew for every
    batch, which cost six times the CPU per row in a measurement with a table of three columns.
    """
    if not rows:
        return []
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table).on_conflict_do_nothing().returning(*returning)
    result = await session.exec(statement, params=list(rows))
    return result.all()


@asynccontextmanager
async def savepoint(session: AsyncSession) -> AsyncIterator[None]:
    """Run the block in a SAVEPOINT, so that an error rolls back only the block's statements.

    Python's sqlite3 module opens a transaction only before a statement that writes, and SAVEPOINT
    counts as none. SQLite then starts the transaction at the SAVEPOINT, and RELEASE commits it:
    the block's rows were saved even when the request failed afterwards and rolled back. So on
    SQLite the transaction is opened first.
    """
    if session.get_bind().dialect.name == "sqlite":
        connection = await session.connection()
        raw = await connection.get_raw_connection()
        if not raw.driver_connection.in_transaction:  # type: ignore[union-attr]
            await connection.exec_driver_sql("BEGIN")
    async with session.begin_nested():
        yield
