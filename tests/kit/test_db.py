"""`insert_new` writes only the rows whose keys are new, and a pooled connection the server closed is replaced."""

import uuid

import pytest
from sqlalchemy import text

from services.kit import clock
from services.kit.db import Database, insert_new
from services.sequencer.db import ProcessedEvent
from services.sequencer.settings import SequencerSettings

TABLE = ProcessedEvent.__table__  # type: ignore[attr-defined]


def _rows(count: int) -> list[dict[str, object]]:
    now = clock.now()
    return [{"event_id": uuid.uuid4().hex, "topic": "test.inserted", "processed_at": now} for _ in range(count)]


async def test_skips_known_keys_across_statements() -> None:
    db = Database(SequencerSettings().database_url)
    known, fresh = _rows(500), _rows(2000)
    async with db.session() as session:
        await insert_new(session, TABLE, known, TABLE.c.event_id)
        await session.commit()

    # More rows than SQLAlchemy puts in one INSERT, with the known ones spread among them.
    mixed = fresh[:1000] + known + fresh[1000:]
    async with db.session() as session:
        inserted = await insert_new(session, TABLE, mixed, TABLE.c.event_id, TABLE.c.topic)
        await session.commit()

    assert sorted(event_id for event_id, _ in inserted) == sorted(row["event_id"] for row in fresh)
    assert {topic for _, topic in inserted} == {"test.inserted"}
    await db.dispose()


async def test_no_rows_no_statement() -> None:
    db = Database(SequencerSettings().database_url)
    async with db.session() as session:
        assert await insert_new(session, TABLE, [], TABLE.c.event_id) == []
        assert not session.in_transaction()
    await db.dispose()


async def test_pool_replaces_closed_connection() -> None:
    db = Database(SequencerSettings().database_url, pool_size=1)
    if db.dialect != "postgresql":
        await db.dispose()
        pytest.skip("SQLite has no server to close a connection")
    async with db.engine.connect() as connection:
        first = (await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one()

    # The server ends the pooled connection while it sits idle, as a restart or an idle timeout would.
    other = Database(SequencerSettings().database_url, pool_size=1)
    async with other.engine.connect() as connection:
        await connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
    await other.dispose()

    async with db.engine.connect() as connection:
        second = (await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one()
    assert second != first
    await db.dispose()
