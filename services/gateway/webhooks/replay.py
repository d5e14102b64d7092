"""Replay cache: remembers which value a one-time token was first seen with."""

from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from .errors import RejectionCode, WebhookUnavailable


class ReplayCache(Protocol):
    async def set_if_absent(self, key: str, value: str, *, ttl_s: int) -> str | None:
        """Store `value` under `key` for `ttl_s` seconds unless the key exists.

        Return None when this call stored the value, else the value stored earlier (unchanged).
        Raise `WebhookUnavailable` when the store cannot be reached.
        """
        ...


class RedisReplayCache:
    """`ReplayCache` on Redis with one atomic `SET key value NX GET EX ttl` (Redis 7.0 or later)."""

    def __init__(self, redis: Redis, *, key_prefix: str) -> None:
        if not key_prefix:
            raise ValueError("key_prefix must not be empty: replay keys share the Redis database")
        self._redis = redis
        self._key_prefix = key_prefix

    async def set_if_absent(self, key: str, value: str, *, ttl_s: int) -> str | None:
        try:
            previous = await self._redis.set(
                self._key_prefix + key, value, nx=True, get=True, ex=ttl_s
            )
        except RedisError as exc:
            raise WebhookUnavailable(
                f"replay cache failed: {type(exc).__name__}",
                code=RejectionCode.REPLAY_CACHE_UNAVAILABLE,
            ) from exc

        if isinstance(previous, bytes):
            return previous.decode("utf-8")
        return previous
