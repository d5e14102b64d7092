"""Per-API-key rate limits: a fixed window counted in Redis.

Each key may send `limit` requests per window of `window_s` seconds, counted under one Redis key
per API key and window. The window follows the platform clock, so tests can move it.
Responses carry `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` (seconds until the
window ends), the three fields of the IETF draft "RateLimit header fields for HTTP" (version 05 and
earlier). A request over the limit gets 429 with `Retry-After`.

When Redis cannot be reached the request passes without a count: a rate limit protects the
services, and refusing every request during a Redis outage would do more harm than it prevents.
"""

import math
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.kit import clock
from services.kit.logging import get_logger
from services.kit.problems import TooManyRequests

log = get_logger(__name__)

STATE_KEY = "rate_limit"


@dataclass(frozen=True)
class RateLimitStatus:
    """The count of one API key in the current window."""

    limit: int
    remaining: int
    reset_s: int

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_s),
        }


class RateLimiter:
    """Counts requests per API key and raises `TooManyRequests` past the limit."""

    def __init__(self, redis: Redis, *, namespace: str, window_s: int, default_limit: int) -> None:
        self.redis = redis
        self.namespace = namespace
        self.window_s = window_s
        self.default_limit = default_limit

    async def hit(self, key_id: str, key_limit: int | None) -> RateLimitStatus | None:
        """Count one request of `key_id`; return the status, or None when no limit applies."""
        limit = self.default_limit if key_limit is None else key_limit
        if limit <= 0:
            return None

        now = clock.now().timestamp()
        window = int(now // self.window_s)
        reset_s = max(1, math.ceil((window + 1) * self.window_s - now))
        count = await self._increment(f"{self.namespace}:gateway:rate:{key_id}:{window}")
        if count is None:
            return None

        status = RateLimitStatus(limit=limit, remaining=max(0, limit - count), reset_s=reset_s)
        if count > limit:
            log.info("request.rate_limited", api_key_id=key_id, limit=limit, window_s=self.window_s)
            raise TooManyRequests(
                f"the API key sent more than {limit} requests in {self.window_s} s; retry in {reset_s} s",
                headers={**status.headers(), "Retry-After": str(reset_s)},
                limit=limit,
                window_s=self.window_s,
            )
        return status

    async def _increment(self, redis_key: str) -> int | None:
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.incr(redis_key)
                pipe.expire(redis_key, self.window_s + 5)
                count, _ = await pipe.execute()
        except (RedisError, OSError) as error:
            log.warning("request.rate_limit_unavailable", error=repr(error))
            return None
        return int(count)


class RateLimitHeaders:
    """ASGI middleware that adds the rate-limit status of the request to its response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            status = scope.get("state", {}).get(STATE_KEY)
            if message["type"] == "http.response.start" and isinstance(status, RateLimitStatus):
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [
                    (name.lower().encode(), value.encode())
                    for name, value in status.headers().items()
                    if name.lower().encode() not in present
                ]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
