"""Rows that a transaction inserts just before it commits, as plain values instead of ORM objects.

The outbox's events and the scoring ledger add many rows per transaction and never change them
afterwards. Building an ORM object per row cost more than the insert itself, so they are kept as
dicts by table and inserted with one executemany per table when the transaction commits. A rolled
back transaction, or savepoint, drops the rows it deferred.

A query in the same transaction does not see deferred rows. Code that reads a table back before
the commit calls `write_deferred` first.
"""

from typing import Any

from sqlalchemy import Table, event, insert
from sqlalchemy.orm import Session, SessionTransaction
from sqlmodel.ext.asyncio.session import AsyncSession

# Keys of a session's info: the deferred rows by table, and how many rows each table had deferred
# when each open savepoint began.
_PENDING = "deferred_rows"
_SAVEPOINTS = "deferred_rows_savepoints"


def defer_rows(session: AsyncSession | Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """Add rows that `table` gets when the session's transaction commits, beginning one if none is open."""
    sync_session = session.sync_session if isinstance(session, AsyncSession) else session
    if not sync_session.in_transaction():
        sync_session.begin()
    sync_session.info.setdefault(_PENDING, {}).setdefault(table, []).extend(rows)


async def write_deferred(session: AsyncSession, table: Table) -> None:
    """Insert `table`'s deferred rows now, so that the statements after this call see them.

    Inside a savepoint the rows keep waiting for the commit, because the savepoint's rollback
    drops them by count. NOTE: no caller reads deferred rows back inside a savepoint today.
    """
    if session.sync_session.get_nested_transaction() is not None:
        return
    rows = session.info.get(_PENDING, {}).pop(table, None)
    if rows:
        await session.exec(insert(table), params=rows)  # type: ignore[call-overload]


@event.listens_for(Session, "before_commit")
def _write_pending(session: Session) -> None:
    """Insert the deferred rows with one statement per table, just before the transaction commits."""
    if session.get_nested_transaction() is not None:
        # A savepoint is being released: the rows wait for the transaction, which may still roll back.
        return
    pending: dict[Table, list[dict[str, Any]]] = session.info.pop(_PENDING, {})
    for table, rows in pending.items():
        # A savepoint rolled back, or an event no service consumes, can leave a table with no rows.
        if rows:
            session.connection().execute(insert(table), rows)


@event.listens_for(Session, "after_transaction_create")
def _mark_savepoint(session: Session, transaction: SessionTransaction) -> None:
    if transaction.nested:
        counts = {table: len(rows) for table, rows in session.info.get(_PENDING, {}).items()}
        session.info.setdefault(_SAVEPOINTS, {})[transaction] = counts


@event.listens_for(Session, "after_soft_rollback")
def _drop_rolled_back(session: Session, previous_transaction: SessionTransaction) -> None:
    """Forget the rows deferred in a transaction, or savepoint, that rolled back."""
    pending = session.info.get(_PENDING, {})
    if previous_transaction.parent is None:
        pending.clear()
        return
    if not previous_transaction.nested:
        # This is the inner transaction of a flush, so the transaction it belongs to decides.
        return
    counts = session.info.get(_SAVEPOINTS, {}).pop(previous_transaction, {})
    for table in list(pending):
        del pending[table][counts.get(table, 0) :]


@event.listens_for(Session, "after_transaction_end")
def _end_transaction(session: Session, transaction: SessionTransaction) -> None:
    # A savepoint's counts stay until the transaction ends, because its rollback is reported after
    # its end. A session closed without a commit or rollback writes nothing either.
    if transaction.parent is None:
        session.info.pop(_PENDING, None)
        session.info.pop(_SAVEPOINTS, None)
