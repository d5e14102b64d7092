"""Creating scoring jobs, handing them to the worker, and reading their progress."""

import uuid

from arq.connections import ArqRedis
from redis.exceptions import RedisError
from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.kit import clock
from services.kit.logging import get_logger
from services.kit.problems import NotFound
from services.kit.queue import job_id, queue_name
from services.scoring.jobs.models import ScoringJob

JOB_FUNCTION = "run_scoring_job"
RESCORE = "rescore"
BACKFILL = "backfill"
QUEUED, RUNNING, DONE, FAILED, SUPERSEDED = "queued", "running", "done", "failed", "superseded"
OPEN_STATES = (QUEUED, RUNNING)

log = get_logger(__name__)


class JobStopped(Exception):
    """A job that cannot go on, such as a rescore whose model got a newer version meanwhile."""

    def __init__(self, state: str, reason: str) -> None:
        super().__init__(reason)
        self.state = state
        self.reason = reason


def new_job(kind: str, model: str, *, version: int | None, total: int, threshold: str | None = None) -> ScoringJob:
    now = clock.now()
    return ScoringJob(
        id=uuid.uuid4().hex,
        kind=kind,
        model=model,
        version=version,
        threshold=threshold,
        total=total,
        created_at=now,
        updated_at=now,
    )


async def open_job(
    session: AsyncSession, kind: str, model: str, *, version: int | None, threshold: str | None = None
) -> ScoringJob | None:
    """Return a queued or running job doing the same work, so asking twice starts it once."""
    query = select(ScoringJob).where(
        ScoringJob.kind == kind,
        ScoringJob.model == model,
        ScoringJob.version == version,
        ScoringJob.threshold == threshold,
        col(ScoringJob.state).in_(OPEN_STATES),
    )
    return (await session.exec(query.order_by(col(ScoringJob.created_at).desc()))).first()


async def get_job(session: AsyncSession, identifier: str) -> ScoringJob:
    job = await session.get(ScoringJob, identifier)
    if job is None:
        raise NotFound(f"scoring job {identifier!r} not found")
    return job


async def count(session: AsyncSession, query: object) -> int:
    return int((await session.exec(select(func.count()).select_from(query.subquery()))).one())  # type: ignore[attr-defined]


def arq_job_id(namespace: str, job: ScoringJob) -> str:
    """Return the arq job id of the job's next slice: the same position always gets the same id."""
    return job_id(namespace, "scoring-job", job.id, job.cursor or "start")


async def enqueue(redis: ArqRedis, namespace: str, job: ScoringJob) -> None:
    """Hand the job to the scoring worker; when Redis is down, the stale-job sweep enqueues it later."""
    try:
        await redis.enqueue_job(
            JOB_FUNCTION,
            job.id,
            _job_id=arq_job_id(namespace, job),
            _queue_name=queue_name(namespace, "scoring"),
        )
    except (RedisError, OSError) as error:
        log.warning("scoring_job.enqueue_failed", job_id=job.id, error=repr(error))
