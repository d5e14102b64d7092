"""The bare floors: the least work that ingesting an event or sending an email needs on this machine.

The ingest floor stores each batch of events in one transaction and pushes one job per event onto
a Redis list. As many consumers as a worker's database pool has connections pop the jobs, and each
job updates one score row in its own transaction. It uses the drivers directly (asyncpg or
sqlite3, redis-py), with no web framework, ORM or queue library. The send floor is an aiosmtplib
loop that sends given messages over as many connections as the sequencer keeps open.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import aiosmtplib
import asyncpg
from redis.asyncio import Redis
from sqlalchemy.engine import make_url

from services.kit.db import is_sqlite

# A service's database pool size (ServiceSettings.database_pool_size) and SMTP connections
# (SequencerSettings.smtp_connections), so the floor gets the same concurrency as the platform.
CONSUMERS = 10
SMTP_CONNECTIONS = 8

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS event (id TEXT PRIMARY KEY, contact_id TEXT NOT NULL, type TEXT NOT NULL, "
    "occurred_at TEXT NOT NULL, properties TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS score (contact_id TEXT PRIMARY KEY, total INTEGER NOT NULL)",
)
INSERT_EVENT = "INSERT INTO event (id, contact_id, type, occurred_at, properties) VALUES ({})"
UPSERT_SCORE = (
    "INSERT INTO score (contact_id, total) VALUES ({0}, 1) "
    "ON CONFLICT (contact_id) DO UPDATE SET total = score.total + 1"
)


class FloorStore(Protocol):
    async def insert_events(self, rows: Sequence[tuple[str, str, str, str, str]]) -> None: ...

    async def add_point(self, contact_id: str) -> None: ...

    async def close(self) -> None: ...


class PostgresStore:
    """The floor's tables in a PostgreSQL database, through an asyncpg pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @classmethod
    async def open(cls, url: str) -> PostgresStore:
        parsed = make_url(url)
        pool = await asyncpg.create_pool(
            host=parsed.host, port=parsed.port or 5432, user=parsed.username, password=parsed.password,
            database=parsed.database, min_size=1, max_size=CONSUMERS,
        )
        async with pool.acquire() as connection:
            for statement in SCHEMA:
                await connection.execute(statement)
        return cls(pool)

    async def insert_events(self, rows: Sequence[tuple[str, str, str, str, str]]) -> None:
        async with self.pool.acquire() as connection, connection.transaction():
            await connection.executemany(INSERT_EVENT.format("$1, $2, $3, $4, $5"), rows)

    async def add_point(self, contact_id: str) -> None:
        async with self.pool.acquire() as connection:
            await connection.execute(UPSERT_SCORE.format("$1"), contact_id)

    async def close(self) -> None:
        await self.pool.close()


class SqliteStore:
    """The floor's tables in a SQLite file, through sqlite3 on a thread (one writer, as SQLite allows)."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection
        self.lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: str) -> SqliteStore:
        connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        # The same pragmas as the services' engines (services/kit/db.py).
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        for statement in SCHEMA:
            connection.execute(statement)
        return cls(connection)

    def _insert(self, rows: Sequence[tuple[str, str, str, str, str]]) -> None:
        self.connection.execute("BEGIN")
        self.connection.executemany(INSERT_EVENT.format("?, ?, ?, ?, ?"), rows)
        self.connection.execute("COMMIT")

    async def insert_events(self, rows: Sequence[tuple[str, str, str, str, str]]) -> None:
        async with self.lock:
            await asyncio.to_thread(self._insert, rows)

    async def add_point(self, contact_id: str) -> None:
        async with self.lock:
            await asyncio.to_thread(self.connection.execute, UPSERT_SCORE.format("?"), (contact_id,))

    async def close(self) -> None:
        self.connection.close()


async def open_store(url: str) -> FloorStore:
    if is_sqlite(url):
        return await SqliteStore.open(str(make_url(url).database))
    return await PostgresStore.open(url)


async def ingest_floor(database_url: str, redis_url: str, queue: str, batches: Sequence[Sequence[dict[str, Any]]]) -> float:
    """Push the events through the bare path and return the seconds until every one is scored."""
    store = await open_store(database_url)
    redis = Redis.from_url(redis_url)
    total = sum(len(batch) for batch in batches)
    scored = 0
    finished = asyncio.Event()

    async def produce() -> None:
        for batch in batches:
            rows = [
                (event["id"], event["email"], event["type"], datetime.now(UTC).isoformat(), json.dumps(event["properties"]))
                for event in batch
            ]
            await store.insert_events(rows)
            await redis.rpush(queue, *[event["email"] for event in batch])

    async def consume() -> None:
        nonlocal scored
        while not finished.is_set():
            popped = await redis.blpop([queue], timeout=0.2)
            if popped is None:
                continue
            await store.add_point(popped[1].decode())
            scored += 1
            if scored == total:
                finished.set()

    started = time.perf_counter()
    consumers = [asyncio.create_task(consume()) for _ in range(CONSUMERS)]
    try:
        await produce()
        # A consumer that fails ends the wait too, so its error is raised instead of hanging.
        waiter = asyncio.create_task(finished.wait())
        done, _ = await asyncio.wait([waiter, *consumers], return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        for task in done:
            task.result()
        elapsed = time.perf_counter() - started
        await asyncio.gather(*consumers)
        return elapsed
    finally:
        for consumer in consumers:
            consumer.cancel()
        await asyncio.gather(*consumers, return_exceptions=True)
        await redis.delete(queue)
        await redis.aclose()
        await store.close()


async def send_floor(host: str, port: int, messages: Sequence[tuple[str, list[str], bytes]]) -> float:
    """Send (sender, recipients, raw message) over persistent connections; return the seconds taken."""
    queue: asyncio.Queue[tuple[str, list[str], bytes]] = asyncio.Queue()
    for message in messages:
        queue.put_nowait(message)

    async def sender() -> None:
        smtp = aiosmtplib.SMTP(hostname=host, port=port, start_tls=False, use_tls=False)
        await smtp.connect()
        try:
            while not queue.empty():
                from_address, recipients, raw = queue.get_nowait()
                await smtp.sendmail(from_address, recipients, raw)
        finally:
            await smtp.quit()

    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(min(SMTP_CONNECTIONS, len(messages)) or 1)))
    return time.perf_counter() - started
