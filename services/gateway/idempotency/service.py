"""Claiming an Idempotency-Key, storing the response of the request that claimed it, purging.

The unique constraint on (API key, Idempotency-Key) decides which of several concurrent requests
runs: the one whose insert commits. The others find its row and get a replay of its response, a
409 while it still runs, or a 422 when their request differs from the stored one.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.gateway.idempotency.models import IdempotencyRecord
from services.kit import clock
from services.kit.db import Database


@dataclass(frozen=True)
class Claimed:
    """This request owns the key and runs; `record_id` receives its response."""

    record_id: int


@dataclass(frozen=True)
class Replay:
    """The key finished earlier with the same request: send its stored response again."""

    status: int
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class InProgress:
    """Another request with this key is still running."""


@dataclass(frozen=True)
class Mismatch:
    """The key was used for a different request (another body, path or query)."""


ClaimResult = Claimed | Replay | InProgress | Mismatch


@dataclass(frozen=True)
class KeyPolicy:
    ttl: timedelta
    lock: timedelta


async def claim(
    db: Database, *, api_key_id: str, idempotency_key: str, fingerprint: str, policy: KeyPolicy
) -> ClaimResult:
    """Claim `idempotency_key` for one request of `api_key_id`, or return why it cannot run."""
    # A lost insert race or an expired row leads to another look at the row.
    for _ in range(3):
        async with db.session() as session:
            existing = await _find(session, api_key_id, idempotency_key)
            now = clock.now()
            if existing is None:
                record = _new_record(api_key_id, idempotency_key, fingerprint, now, policy)
                session.add(record)
                try:
                    await session.commit()
                except IntegrityError:
                    await session.rollback()
                    continue
                return Claimed(record.id)  # type: ignore[arg-type]

            if existing.expires_at <= now:
                await session.exec(delete(IdempotencyRecord).where(IdempotencyRecord.id == existing.id))  # type: ignore[arg-type]
                await session.commit()
                continue
            return await _decide(session, existing, fingerprint, now, policy)
    return InProgress()


async def _decide(
    session: AsyncSession, existing: IdempotencyRecord, fingerprint: str, now: datetime, policy: KeyPolicy
) -> ClaimResult:
    if existing.fingerprint != fingerprint:
        return Mismatch()
    if existing.state == "completed":
        return Replay(
            status=existing.response_status or 200,
            headers=dict(existing.response_headers or {}),
            body=existing.response_body or b"",
        )
    if existing.locked_until > now:
        return InProgress()

    # The request that claimed the key died before storing a response. The first to bump the lock
    # takes over.
    taken = await session.exec(
        update(IdempotencyRecord)
        .where(IdempotencyRecord.id == existing.id, IdempotencyRecord.locked_until == existing.locked_until)  # type: ignore[arg-type]
        .values(locked_until=now + policy.lock)
    )
    await session.commit()
    return Claimed(existing.id) if taken.rowcount == 1 else InProgress()  # type: ignore[arg-type]


async def complete(db: Database, record_id: int, *, status: int, headers: dict[str, str], body: bytes) -> None:
    """Store the response of the request that owns the key, for later replays."""
    async with db.session() as session:
        await session.exec(
            update(IdempotencyRecord)
            .where(IdempotencyRecord.id == record_id)  # type: ignore[arg-type]
            .values(state="completed", response_status=status, response_headers=headers, response_body=body)
        )
        await session.commit()


async def release(db: Database, record_id: int) -> None:
    """Forget the key, so the same request may be sent again (after an error response)."""
    async with db.session() as session:
        await session.exec(delete(IdempotencyRecord).where(IdempotencyRecord.id == record_id))  # type: ignore[arg-type]
        await session.commit()


async def purge_expired(db: Database) -> int:
    """Delete records past their expiry; return how many were deleted."""
    async with db.session() as session:
        result = await session.exec(delete(IdempotencyRecord).where(IdempotencyRecord.expires_at <= clock.now()))  # type: ignore[arg-type]
        await session.commit()
    return int(result.rowcount or 0)


async def _find(session: AsyncSession, api_key_id: str, idempotency_key: str) -> IdempotencyRecord | None:
    query = select(IdempotencyRecord).where(
        IdempotencyRecord.api_key_id == api_key_id, IdempotencyRecord.idempotency_key == idempotency_key
    )
    return (await session.exec(query)).first()


def _new_record(
    api_key_id: str, idempotency_key: str, fingerprint: str, now: datetime, policy: KeyPolicy
) -> IdempotencyRecord:
    return IdempotencyRecord(
        api_key_id=api_key_id,
        idempotency_key=idempotency_key,
        fingerprint=fingerprint,
        state="in_progress",
        locked_until=now + policy.lock,
        created_at=now,
        expires_at=now + policy.ttl,
    )
