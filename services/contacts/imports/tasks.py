"""The import job run by the contacts worker, and the sweep that finds jobs Redis lost.

The job streams the stored file through ContactCsvReader and commits every `import_chunk_rows`
rows in one transaction together with the report so far and the last committed line. A job that is
interrupted (worker killed, database away) starts again and skips the lines already committed, so
no row is saved or counted twice. The loop is not `imports.report.import_rows`, because it has to
commit in chunks, keep its progress in the database and report rows the database rules reject.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from arq import Retry
from sqlalchemy import update
from sqlmodel import col, select

from services.contacts.attributes.service import load_definitions
from services.contacts.changes import ContactChanges
from services.contacts.imports.csv_reader import ContactCsvReader, RejectedRow, RowProblem, RowResult
from services.contacts.imports.mapping import ImportFileError
from services.contacts.imports.models import ImportJob
from services.contacts.imports.report import ImportReport
from services.contacts.imports.service import enqueue_import, import_job_key, upload_path
from services.contacts.imports.sink import DatabaseSink
from services.contacts.publishing import flush_changes
from services.contacts.settings import ContactsSettings
from services.kit import clock
from services.kit.consumer import retry_delay_s
from services.kit.logging import get_logger
from services.kit.queue import ARQ_IN_PROGRESS_KEY_PREFIX, ARQ_JOB_KEY_PREFIX, ARQ_RESULT_KEY_PREFIX

log = get_logger(__name__)

MAX_TRIES = 5
# A queued or running job whose row has not moved for this long is checked against Redis.
STALE_AFTER = timedelta(seconds=30)
# A run commits its progress every chunk, so a job marked in progress whose row has not moved for
# this long belongs to a worker that died. arq would keep that mark until the job timeout passed.
DEAD_RUN_AFTER = timedelta(seconds=60)


class JobSuperseded(Exception):
    """Another run of the same job committed a chunk first; this run stops."""


async def run_import(ctx: dict[str, Any], import_id: str) -> str:
    """Run one import job to its end; retried with backoff on failure, marked failed after the last try."""
    job_try = int(ctx.get("job_try", 1))
    bound = log.bind(import_id=import_id, job_try=job_try)
    try:
        return await _run(ctx, import_id)
    except JobSuperseded:
        bound.warning("import.superseded")
        return "superseded"
    except Exception as error:
        if job_try >= MAX_TRIES:
            bound.exception("import.failed")
            await _finish(ctx, import_id, "failed", f"the import stopped on an internal error: {type(error).__name__}")
            raise
        bound.warning("import.retry", error=repr(error))
        raise Retry(defer=retry_delay_s(job_try)) from error


async def _run(ctx: dict[str, Any], import_id: str) -> str:
    db, settings = ctx["db"], ctx["settings"]
    async with db.session() as session:
        job = await session.get(ImportJob, import_id)
        if job is None or job.status in ("done", "failed"):
            return "nothing to do"
        job.status = "running"
        job.attempts += 1
        job.started_at = job.started_at or clock.now()
        job.updated_at = clock.now()
        await session.commit()
        definitions = await load_definitions(session)

    path = upload_path(settings, import_id)
    if not path.exists():
        await _finish(ctx, import_id, "failed", "the uploaded file is missing; upload it again")
        return "failed"

    log.info("import.started", import_id=import_id, resume_after_line=job.committed_line)
    with path.open("rb") as file:
        try:
            reader = ContactCsvReader(file, job.mapping, definitions, delimiter=job.delimiter)
        except ImportFileError as error:
            await _finish(ctx, import_id, "failed", f"{error.field}: {error.detail}")
            return "failed"
        report = restore_report(job.report)
        committed = job.committed_line
        await _import_rows(ctx, job, reader, file, report, committed, definitions)

    await _finish(ctx, import_id, "done", None)
    log.info("import.done", import_id=import_id, created=report.created, updated=report.updated, rejected=len(report.failed))
    return "done"


async def _import_rows(
    ctx: dict[str, Any], job: ImportJob, reader: ContactCsvReader, file: Any, report: ImportReport,
    committed: int, definitions: dict[str, Any],
) -> None:
    settings: ContactsSettings = ctx["settings"]
    chunk: list[RowResult] = []
    for row in reader:
        if row.line <= committed:
            continue
        chunk.append(row)
        if len(chunk) >= settings.import_chunk_rows:
            committed = await _commit_chunk(ctx, job, chunk, report, committed, file.tell(), definitions)
            chunk = []

    report.blank_lines = reader.blank_lines
    await _commit_chunk(ctx, job, chunk, report, committed, file.tell(), definitions)


async def _commit_chunk(
    ctx: dict[str, Any], job: ImportJob, chunk: list[RowResult], report: ImportReport,
    committed: int, bytes_read: int, definitions: dict[str, Any],
) -> int:
    """Save a chunk and the progress after it in one transaction; return the new committed line."""
    db, outbox, settings = ctx["db"], ctx["outbox"], ctx["settings"]
    last_line = chunk[-1].line if chunk else committed
    async with db.session() as session:
        changes = ContactChanges()
        sink = DatabaseSink(session, outbox, changes, definitions, import_id=job.id, mode=job.mode)
        await sink.save_rows(chunk, report)
        await flush_changes(session, outbox, changes, settings)

        # Compare-and-set on the committed line, so a second run of the same job cannot save a chunk twice.
        result = await session.exec(
            update(ImportJob)
            .where(col(ImportJob.id) == job.id, col(ImportJob.committed_line) == committed)
            .values(committed_line=last_line, bytes_read=bytes_read, report=report.to_dict(), updated_at=clock.now())
        )  # type: ignore[call-overload]
        if result.rowcount != 1:
            await session.rollback()
            raise JobSuperseded
        await session.commit()
    return last_line


async def _finish(ctx: dict[str, Any], import_id: str, status: str, error: str | None) -> None:
    db, settings = ctx["db"], ctx["settings"]
    async with db.session() as session:
        job = await session.get(ImportJob, import_id)
        if job is None:
            return
        job.status = status
        job.error = error
        job.finished_at = clock.now()
        job.updated_at = clock.now()
        if status == "done":
            job.bytes_read = job.bytes_total
        await session.commit()
    # The file contains people's addresses, so once the job ends only its report is kept.
    upload_path(settings, import_id).unlink(missing_ok=True)


def restore_report(data: dict[str, Any]) -> ImportReport:
    """Rebuild the report stored after the last committed chunk."""
    report = ImportReport(
        created=int(data.get("created", 0)),
        updated=int(data.get("updated", 0)),
        duplicate_lines=list(data.get("duplicate_lines", [])),
        consent_changes_ignored=int(data.get("consent_changes_ignored", 0)),
        blank_lines=int(data.get("blank_lines", 0)),
    )
    for entry in data.get("failed", []):
        problems = entry.get("problems") or [{"reason": entry["reason"], "detail": entry["detail"], "field": entry.get("field")}]
        report.failed.append(RejectedRow(entry["line"], tuple(RowProblem(**problem) for problem in problems)))
    return report


async def sweep_imports(ctx: dict[str, Any]) -> int:
    """Queue again every unfinished job whose arq job is gone from Redis; return how many."""
    db, redis, settings = ctx["db"], ctx["redis"], ctx["settings"]
    now = clock.now()
    async with db.session() as session:
        query = select(ImportJob.id, ImportJob.updated_at).where(
            col(ImportJob.status).in_(["queued", "running"]), col(ImportJob.updated_at) < now - STALE_AFTER
        )
        stale = list((await session.exec(query)).all())

    requeued = 0
    for import_id, updated_at in stale:
        key = import_job_key(settings.namespace, import_id)
        if updated_at < now - DEAD_RUN_AFTER and await redis.delete(ARQ_IN_PROGRESS_KEY_PREFIX + key):
            # The job is still queued, so a worker takes it up again. If the run was alive after all,
            # the chunk check stops one of the two (JobSuperseded).
            log.warning("import.dead_run_released", import_id=import_id)
        if await redis.exists(ARQ_JOB_KEY_PREFIX + key, ARQ_IN_PROGRESS_KEY_PREFIX + key):
            continue
        # A finished run leaves a result under the same id, which would stop arq from queueing it again.
        await redis.delete(ARQ_RESULT_KEY_PREFIX + key)
        await enqueue_import(redis, settings, import_id)
        requeued += 1
        log.warning("import.requeued", import_id=import_id)
    return requeued
