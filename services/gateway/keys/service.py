"""Creating, checking and revoking API keys."""

import hashlib
import secrets
import uuid

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.gateway.keys.models import ApiKey
from services.gateway.keys.scopes import validate_scopes
from services.kit import clock

KEY_PREFIX = "nk"


def _hash(key: str) -> str:
    # Keys are 256 random bits, so a plain SHA-256 is enough; a slow hash would only add latency.
    return hashlib.sha256(key.encode()).hexdigest()


async def create_key(
    session: AsyncSession, *, name: str, scopes: list[str], rate_limit: int | None = None
) -> tuple[ApiKey, str]:
    """Create a key and return its row and the key itself, which is never stored.

    `rate_limit` is the key's requests per window; None uses the gateway's default, 0 is unlimited.
    """
    if rate_limit is not None and rate_limit < 0:
        raise ValueError(f"rate_limit must be 0 (unlimited) or more, got {rate_limit}")
    prefix = secrets.token_hex(6)
    key = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    row = ApiKey(
        id=uuid.uuid4().hex,
        name=name,
        prefix=prefix,
        key_hash=_hash(key),
        scopes=validate_scopes(scopes),
        rate_limit=rate_limit,
        created_at=clock.now(),
    )
    session.add(row)
    await session.commit()
    return row, key


async def authenticate(session: AsyncSession, key: str) -> ApiKey | None:
    """Return the live key row matching `key`, comparing hashes in constant time."""
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX:
        return None
    row = (await session.exec(select(ApiKey).where(ApiKey.prefix == parts[1]))).first()
    if row is None or row.revoked_at is not None:
        return None
    if not secrets.compare_digest(row.key_hash, _hash(key)):
        return None
    return row


async def revoke_key(session: AsyncSession, key_id_or_prefix: str) -> ApiKey | None:
    """Revoke a key by id or prefix; return it, or None when there is no such key."""
    query = select(ApiKey).where((ApiKey.id == key_id_or_prefix) | (ApiKey.prefix == key_id_or_prefix))
    row = (await session.exec(query)).first()
    if row is None:
        return None
    row.revoked_at = row.revoked_at or clock.now()
    session.add(row)
    await session.commit()
    return row


async def list_keys(session: AsyncSession) -> list[ApiKey]:
    return list((await session.exec(select(ApiKey).order_by(ApiKey.created_at))).all())  # type: ignore[arg-type]
