"""The scoring service's table registry, its outbox and processed-event tables, and SQL helpers."""

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from services.kit.db import insert_new, service_base
from services.kit.outbox import OutboxColumns, ProcessedEventColumns

ScoringBase = service_base("scoring")


class OutboxMessage(ScoringBase, OutboxColumns, table=True):  # type: ignore[call-arg]
    __tablename__ = "outbox"


class ProcessedEvent(ScoringBase, ProcessedEventColumns, table=True):  # type: ignore[call-arg]
    __tablename__ = "processed_event"


def dialect_name(session: AsyncSession) -> str:
    """Return "postgresql" or "sqlite" for the database behind `session`."""
    bind = session.bind
    if bind is None:
        raise RuntimeError("the session is not bound to an engine")
    return bind.dialect.name


async def insert_ignore_many(session: AsyncSession, model: type[SQLModel], rows: list[dict[str, Any]]) -> None:
    """Insert rows, skipping each whose key exists, as `insert_ignore` does for one."""
    table = model.__table__  # type: ignore[attr-defined]
    await insert_new(session, table, rows, *table.primary_key.columns)


async def insert_ignore(session: AsyncSession, model: type[SQLModel], values: dict[str, Any]) -> None:
    """Insert one row unless a row with the same key exists (ON CONFLICT DO NOTHING on both databases)."""
    table = model.__table__  # type: ignore[attr-defined]
    dialect = postgresql if dialect_name(session) == "postgresql" else sqlite
    statement = dialect.insert(table).values(**values).on_conflict_do_nothing()
    await session.exec(statement)  # type: ignore[call-overload]
