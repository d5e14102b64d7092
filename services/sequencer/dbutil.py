"""Statements that differ between PostgreSQL and SQLite, written once for both."""

from typing import Any

from sqlalchemy import Select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession


def dialect_of(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


async def insert_ignoring_conflict(
    session: AsyncSession, model: type[SQLModel], values: dict[str, Any], *, returning: Any = None
) -> Any:
    """Insert a row unless it would break a unique constraint; return `returning`'s value, or None on conflict.

    A conflict leaves the transaction usable, unlike an IntegrityError, so an event consumer can go
    on and commit its other changes.
    """
    insert = postgresql.insert if dialect_of(session) == "postgresql" else sqlite.insert
    statement = insert(model).values(**values).on_conflict_do_nothing()  # type: ignore[arg-type]
    if returning is None:
        result = await session.exec(statement)  # type: ignore[call-overload]
        return True if result.rowcount else None
    result = await session.exec(statement.returning(returning))  # type: ignore[call-overload]
    return result.scalar_one_or_none()


def locked(query: Select[Any], session: AsyncSession, *, skip_locked: bool = False) -> Select[Any]:
    """Add FOR UPDATE (SKIP LOCKED) on PostgreSQL; SQLite locks the whole file on the first write instead."""
    if dialect_of(session) != "postgresql":
        return query
    return query.with_for_update(skip_locked=skip_locked)
