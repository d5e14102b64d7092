"""Internal routes for CSV imports: upload a file with its column mapping, then follow the job."""

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, Response, UploadFile
from pydantic import BaseModel, Field

from services.contacts.deps import Session, SettingsDep
from services.contacts.imports.models import ImportJob
from services.contacts.imports.service import (
    check_mode,
    create_import,
    enqueue_import,
    get_import,
    parse_mapping,
    store_upload,
)
from services.kit.problems import invalid

router = APIRouter(tags=["imports"])

DELIMITERS = (",", ";", "\t", "|")


class ImportAccepted(BaseModel):
    id: str
    status: str
    reused: bool = Field(description="True when the same file, mapping and mode were uploaded before: nothing runs again")


class RejectedRowOut(BaseModel):
    line: int
    reason: str
    detail: str
    field: str | None = None
    problems: list[dict[str, Any]] | None = None


class ImportOut(BaseModel):
    id: str
    status: str = Field(description="queued, running, done or failed")
    mode: str
    file_name: str | None
    error: str | None
    bytes_total: int
    bytes_read: int
    progress: float = Field(description="Share of the file read and committed, 0 to 1")
    committed_line: int = Field(description="The last line whose row is saved and counted")
    rows: int
    created: int
    updated: int
    duplicates: int
    duplicate_lines: list[int]
    rejected: int
    failed: list[RejectedRowOut]
    consent_changes_ignored: int
    blank_lines: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


@router.post("/imports", status_code=202, response_model=ImportAccepted)
async def post_import(
    request: Request,
    response: Response,
    session: Session,
    settings: SettingsDep,
    file: Annotated[UploadFile, File(description="CSV file, UTF-8, header on line 1")],
    mapping: Annotated[str, Form(description='JSON object {"csv column": "target"}, such as {"Email": "email"}')],
    mode: Annotated[str, Form(description="upsert (default), overwrite or create_only")] = "upsert",
    delimiter: Annotated[str, Form(description="',' (default), ';', tab or '|'")] = ",",
) -> ImportAccepted:
    """Accept a CSV import and queue it; the same file uploaded again returns the first job."""
    columns = parse_mapping(mapping)
    check_mode(mode)
    if delimiter not in DELIMITERS:
        raise invalid("delimiter", "use ',', ';', tab or '|'")

    stored = await store_upload(file, settings)
    job, started = await create_import(
        session, stored, file_name=file.filename, mapping=columns, mode=mode, delimiter=delimiter, settings=settings
    )
    if started:
        await enqueue_import(request.app.state.redis, settings, job.id)
    response.headers["Location"] = f"/imports/{job.id}"
    return ImportAccepted(id=job.id, status=job.status, reused=not started)


@router.get("/imports/{import_id}", response_model=ImportOut)
async def read_import(import_id: str, session: Session) -> ImportOut:
    """Read an import's progress and counts, with every rejected row's line number and reason."""
    return import_out(await get_import(session, import_id))


def import_out(job: ImportJob) -> ImportOut:
    report = job.report or {}
    failed = report.get("failed", [])
    progress = 0.0
    if job.status == "done":
        progress = 1.0
    elif job.bytes_total:
        progress = job.bytes_read / job.bytes_total
    return ImportOut(
        id=job.id,
        status=job.status,
        mode=job.mode,
        file_name=job.file_name,
        error=job.error,
        bytes_total=job.bytes_total,
        bytes_read=job.bytes_read,
        progress=round(progress, 4),
        committed_line=job.committed_line,
        rows=report.get("rows", 0),
        created=report.get("created", 0),
        updated=report.get("updated", 0),
        duplicates=report.get("duplicates", 0),
        duplicate_lines=report.get("duplicate_lines", []),
        rejected=len(failed),
        failed=failed,
        consent_changes_ignored=report.get("consent_changes_ignored", 0),
        blank_lines=report.get("blank_lines", 0),
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )
