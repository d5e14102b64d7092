"""Deferred rows go in with the commit, earlier on request, and never after a rollback."""

import uuid

from sqlmodel import col, select

from services.kit import clock
from services.kit.db import Database
from services.kit.deferred_rows import defer_rows, write_deferred
from services.sequencer.db import ProcessedEvent
from services.sequencer.settings import SequencerSettings

TABLE = ProcessedEvent.__table__  # type: ignore[attr-defined]


def _rows(count: int) -> list[dict[str, object]]:
    now = clock.now()
    return [{"event_id": uuid.uuid4().hex, "topic": "test.deferred", "processed_at": now} for _ in range(count)]


async def _stored(db: Database, rows: list[dict[str, object]]) -> int:
    async with db.session() as session:
        query = select(ProcessedEvent.event_id).where(col(ProcessedEvent.event_id).in_([row["event_id"] for row in rows]))
        return len((await session.exec(query)).all())


async def test_rows_go_in_with_the_commit() -> None:
    db = Database(SequencerSettings().database_url)
    rows = _rows(3)
    async with db.session() as session:
        defer_rows(session, TABLE, rows)
        seen_before_commit = (await session.exec(select(ProcessedEvent).where(col(ProcessedEvent.event_id) == rows[0]["event_id"]))).all()
        await session.commit()

    assert seen_before_commit == []
    assert await _stored(db, rows) == 3
    await db.dispose()


async def test_write_deferred_makes_rows_visible() -> None:
    db = Database(SequencerSettings().database_url)
    rows = _rows(2)
    async with db.session() as session:
        defer_rows(session, TABLE, rows)
        await write_deferred(session, TABLE)
        seen = (await session.exec(select(ProcessedEvent).where(col(ProcessedEvent.event_id) == rows[0]["event_id"]))).all()
        await session.commit()

    assert len(seen) == 1
    assert await _stored(db, rows) == 2
    await db.dispose()


async def test_rollback_drops_rows() -> None:
    db = Database(SequencerSettings().database_url)
    dropped, committed = _rows(2), _rows(1)
    async with db.session() as session:
        defer_rows(session, TABLE, dropped)
        await session.rollback()
        defer_rows(session, TABLE, committed)
        await session.commit()

    assert await _stored(db, dropped) == 0
    assert await _stored(db, committed) == 1
    await db.dispose()
