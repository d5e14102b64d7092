"""Replay cache: remembers which value a one-time token was first seen with."""

from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from .errors import RejectionCode, WebhookUnavailable

# `SET key value NX GET` would do this in one command, but only from Redis 7.0 on; the embedded
# Redis of `nurture up` is 6.2. A script runs atomically on every version since 2.6.
_SET_IF_ABSENT = """
local previous = redis.call('GET', KEYS[1])
if previous then
    return previous
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return false
"""


class ReplayCache(Protocol):
    async def set_if_absent(self, key: str, value: str, *, ttl_s: int) -> str | None:
        """Store `value` under `key` for `ttl_s` seconds unless the key exists.

        Return None when this call stored the value, else the value stored earlier (unchanged).
        Raise `WebhookUnavailable` when the store cannot be reached.
        """
        ...


class RedisReplayCache:
    """`ReplayCache` on Redis, atomic through one Lua script."""

    def __init__(self, redis: Redis, *, key_prefix: str) -> None:
        if not key_prefix:
            raise ValueError("key_prefix must not be empty: replay keys share the Redis database")
        self._redis = redis
        self._key_prefix = key_prefix
        self._script = redis.register_script(_SET_IF_ABSENT)

    async def set_if_absent(self, key: str, value: str, *, ttl_s: int) -> str | None:
        try:
            previous = await self._script(keys=[self._key_prefix + key], args=[value, ttl_s])
        except RedisError as exc:
            raise WebhookUnavailable(
                f"replay cache failed: {type(exc).__name__}",
                code=RejectionCode.REPLAY_CACHE_UNAVAILABLE,
            ) from exc

        if isinstance(previous, bytes):
            return previous.decode("utf-8")
        return previous  # type: ignore[no-any-return]
