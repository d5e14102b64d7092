"""arq queues on Redis: names, job ids, connection settings and the JSON job format.

Jobs travel as JSON rather than arq's default pickle, so a job's payload is a contract any service
can read, and nothing in Redis can make a worker run arbitrary code.
"""

import json
from typing import Any

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings

# The Redis key prefixes arq uses for a job's record, its result and its in-progress marker
# (arq.constants in arq 0.26).
ARQ_JOB_KEY_PREFIX = "arq:job:"
ARQ_RESULT_KEY_PREFIX = "arq:result:"
ARQ_IN_PROGRESS_KEY_PREFIX = "arq:in-progress:"


def queue_name(namespace: str, service: str) -> str:
    """Return the arq queue a service's worker reads."""
    return f"{namespace}:queue:{service}"


def job_id(namespace: str, *parts: str) -> str:
    """Build a deterministic job id, so enqueueing the same work twice is a no-op in arq."""
    return ":".join((namespace, *parts))


def serialize_job(data: dict[str, Any]) -> bytes:
    return json.dumps(data, default=str, separators=(",", ":")).encode()


def deserialize_job(data: bytes) -> dict[str, Any]:
    return json.loads(data)  # type: ignore[no-any-return]


def redis_settings(url: str) -> RedisSettings:
    """Return arq connection settings for a Redis URL, retrying briefly while Redis restarts."""
    settings = RedisSettings.from_dsn(url)
    settings.conn_timeout = 5
    settings.conn_retries = 5
    settings.conn_retry_delay = 1
    return settings


async def create_queue_pool(url: str) -> ArqRedis:
    """Open an arq Redis pool that writes JSON jobs."""
    return await create_pool(
        redis_settings(url),
        job_serializer=serialize_job,
        job_deserializer=deserialize_job,
    )
