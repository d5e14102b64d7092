"""The arq job that runs rescoring and threshold backfills in chunks, with progress in the database.

Each chunk is one transaction: it claims the job row, locks a chunk of contacts in contact-id
order, does the work and stores the progress (`done`, `cursor`) with it. A worker killed mid-chunk
loses only that uncommitted chunk, and the next run resumes after the last committed one. A run
stops after `SLICE_S` seconds and enqueues the next slice, so no single arq job outlives the
worker's job timeout.
"""

import time
from collections.abc import Awaitable, Callable
from typing import Any

from arq import Retry
from arq.worker import Function, func
from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.kit import clock
from services.kit.consumer import retry_delay_s
from services.kit.db import Database
from services.kit.logging import get_logger
from services.scoring.history.models import ContactFacts
from services.scoring.jobs.models import ScoringJob
from services.scoring.jobs.rescore import rescore_chunk
from services.scoring.jobs.service import (
    BACKFILL,
    DONE,
    FAILED,
    JOB_FUNCTION,
    OPEN_STATES,
    RESCORE,
    RUNNING,
    JobStopped,
    enqueue,
)
from services.scoring.scores.models import ContactScore
from services.scoring.thresholds.backfill import backfill_chunk

SLICE_S = 60.0
MAX_TRIES = 5
# How often, in wall-clock seconds, the worker looks for jobs whose arq job was lost.
STALE_CHECK_EVERY_S = 10.0

log = get_logger(__name__)

Chunk = Callable[[AsyncSession, dict[str, Any], ScoringJob, list[str]], Awaitable[None]]


def job_function() -> Function:
    return func(run_scoring_job, name=JOB_FUNCTION, max_tries=MAX_TRIES)


async def run_scoring_job(ctx: dict[str, Any], identifier: str) -> str:
    """Run chunks of a scoring job until it is done, stopped, or its time slice is used up."""
    db: Database = ctx["db"]
    started = time.monotonic()
    while True:
        try:
            async with db.session() as session:
                state = await _run_chunk(session, ctx, identifier)
        except Exception as error:
            job_try = int(ctx.get("job_try", 1))
            if job_try >= MAX_TRIES:
                log.exception("scoring_job.failed", job_id=identifier)
                async with db.session() as session:
                    return await _finish(session, await session.get(ScoringJob, identifier), FAILED, repr(error))
            log.warning("scoring_job.retry", job_id=identifier, job_try=job_try, error=repr(error))
            raise Retry(defer=retry_delay_s(job_try)) from error
        if state != RUNNING:
            return state
        if time.monotonic() - started > SLICE_S:
            async with db.session() as session:
                job = await session.get(ScoringJob, identifier)
            if job is not None:
                await enqueue(ctx["redis"], ctx["settings"].namespace, job)
            return "continued"


async def _run_chunk(session: AsyncSession, ctx: dict[str, Any], identifier: str) -> str:
    job = await _claim(session, identifier)
    if job is None:
        return "finished"

    chunk_size = ctx["settings"].job_chunk_size
    select_ids, process = _kinds()[job.kind]
    ids = await select_ids(session, job, chunk_size)
    if not ids:
        return await _finish(session, job, DONE, None)

    try:
        await process(session, ctx, job, ids)
    except JobStopped as stopped:
        await session.rollback()
        return await _finish(session, await session.get(ScoringJob, identifier), stopped.state, stopped.reason)

    job.done += len(ids)
    job.total = max(job.total, job.done)
    job.cursor = ids[-1]
    job.updated_at = clock.now()
    session.add(job)
    await session.commit()
    log.info("scoring_job.progress", job_id=job.id, kind=job.kind, done=job.done, total=job.total)
    return RUNNING


async def _claim(session: AsyncSession, identifier: str) -> ScoringJob | None:
    """Lock the job row for this transaction (and mark it running); None when it is no longer open.

    The claim is the transaction's first write, so on SQLite it also takes the write lock before
    anything is read.
    """
    now = clock.now()
    statement = (
        update(ScoringJob)
        .where(col(ScoringJob.id) == identifier, col(ScoringJob.state).in_(OPEN_STATES))
        .values(state=RUNNING, updated_at=now)
    )
    result = await session.exec(statement)  # type: ignore[call-overload]
    if not result.rowcount:
        return None
    job = await session.get(ScoringJob, identifier, populate_existing=True)
    if job is not None and job.started_at is None:
        job.started_at = now
    return job


async def _finish(session: AsyncSession, job: ScoringJob | None, state: str, reason: str | None) -> str:
    if job is None:
        return state
    now = clock.now()
    job.state = state
    job.error = reason[:500] if reason else None
    job.finished_at = now
    job.updated_at = now
    session.add(job)
    await session.commit()
    log.info("scoring_job.finished", job_id=job.id, kind=job.kind, state=state, done=job.done, reason=reason)
    return state


async def _rescore_ids(session: AsyncSession, job: ScoringJob, limit: int) -> list[str]:
    query = select(ContactFacts.contact_id).order_by(ContactFacts.contact_id).limit(limit)
    if job.cursor is not None:
        query = query.where(ContactFacts.contact_id > job.cursor)
    return list((await session.exec(query)).all())


async def _backfill_ids(session: AsyncSession, job: ScoringJob, limit: int) -> list[str]:
    query = select(ContactScore.contact_id).where(ContactScore.model == job.model)
    query = query.order_by(ContactScore.contact_id).limit(limit)
    if job.cursor is not None:
        query = query.where(ContactScore.contact_id > job.cursor)
    return list((await session.exec(query)).all())


def _kinds() -> dict[str, tuple[Callable[[AsyncSession, ScoringJob, int], Awaitable[list[str]]], Chunk]]:
    return {RESCORE: (_rescore_ids, rescore_chunk), BACKFILL: (_backfill_ids, backfill_chunk)}


_last_stale_check = {"at": 0.0}


async def requeue_stale_jobs(ctx: dict[str, Any]) -> None:
    """Enqueue again the open jobs that have not moved for a while (their arq job may be lost).

    Enqueueing is harmless when the job is in fact alive: its arq id is deterministic, so arq
    ignores the copy, and chunks claim the job row one at a time.
    """
    if time.monotonic() - _last_stale_check["at"] < STALE_CHECK_EVERY_S:
        return
    _last_stale_check["at"] = time.monotonic()

    settings = ctx["settings"]
    cutoff = clock.now().timestamp() - settings.job_stale_after_s
    async with ctx["db"].session() as session:
        jobs = (await session.exec(select(ScoringJob).where(col(ScoringJob.state).in_(OPEN_STATES)))).all()
    for job in jobs:
        if job.updated_at.timestamp() < cutoff:
            log.warning("scoring_job.requeued", job_id=job.id, kind=job.kind, done=job.done)
            await enqueue(ctx["redis"], settings.namespace, job)

