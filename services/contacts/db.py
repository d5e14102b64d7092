"""The contacts service's table registry, its outbox and processed-event tables, and SQL helpers."""

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from services.kit.db import service_base
from services.kit.outbox import OutboxColumns, ProcessedEventColumns

ContactsBase = service_base("contacts")

# SQLite's lower() folds only ASCII letters, so case-insensitive segment filters on SQLite call this
# Python function instead (PostgreSQL's lower() folds every script under a UTF-8 locale).
SQLITE_LOWER_FUNCTION = "nurture_lower"


class OutboxMessage(ContactsBase, OutboxColumns, table=True):  # type: ignore[call-arg]
    __tablename__ = "outbox"


class ProcessedEvent(ContactsBase, ProcessedEventColumns, table=True):  # type: ignore[call-arg]
    __tablename__ = "processed_event"


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


async def install_sql_functions(engine: AsyncEngine) -> None:
    """Register the SQL functions segment filters need on every SQLite connection of `engine`."""
    if engine.dialect.name != "sqlite":
        return

    def _register(dbapi_connection: Any, _: Any) -> None:
        dbapi_connection.create_function(SQLITE_LOWER_FUNCTION, 1, _lower, deterministic=True)

    event.listen(engine.sync_engine, "connect", _register)
    # Connections opened before the listener existed lack the function; closing them makes the
    # pool open new ones.
    await engine.dispose()
