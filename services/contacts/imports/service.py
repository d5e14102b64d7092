"""Accepting an upload: stream it to disk while hashing, check its header, and queue its job once.

The file is written to `<data dir>/imports/` (shared by the API and the worker) rather than held in
memory. A job is identified by the SHA-256 of the file together with its mapping, mode and
delimiter, so uploading the same file again returns the first job and changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arq.connections import ArqRedis
from fastapi import UploadFile
from redis.exceptions import RedisError
from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.contacts.attributes.service import load_definitions
from services.contacts.imports.csv_reader import ContactCsvReader
from services.contacts.imports.mapping import ImportFileError
from services.contacts.imports.models import ImportJob
from services.contacts.imports.sink import MODES
from services.contacts.settings import ContactsSettings
from services.kit import clock
from services.kit.logging import get_logger
from services.kit.problems import NotFound, PayloadTooLarge, invalid
from services.kit.queue import job_id, queue_name

log = get_logger(__name__)

RUN_IMPORT_JOB = "run_import"
_READ_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class StoredUpload:
    path: Path
    sha256: str
    size: int


def parse_mapping(raw: str) -> dict[str, str]:
    """Return the column mapping sent as a JSON object of strings, or raise a 422 naming `mapping`."""
    try:
        mapping = json.loads(raw)
    except json.JSONDecodeError as error:
        raise invalid("mapping", f"the mapping is not valid JSON: {error}") from None

    if not isinstance(mapping, dict) or not all(isinstance(key, str) and isinstance(value, str) for key, value in mapping.items()):
        raise invalid("mapping", 'the mapping must be a JSON object of {"csv column": "target"} strings')
    return mapping


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise invalid("mode", f"{mode!r} is not an import mode; use {', '.join(MODES)}")
    return mode


async def store_upload(upload: UploadFile, settings: ContactsSettings) -> StoredUpload:
    """Copy the upload to a temporary file in the imports folder, hashing it; 413 when it is too large."""
    folder = settings.imports_dir
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f".upload-{uuid.uuid4().hex}.tmp"
    digest = hashlib.sha256()
    size = 0
    try:
        with path.open("wb") as out:
            while chunk := await upload.read(_READ_CHUNK):
                size += len(chunk)
                if size > settings.import_max_bytes:
                    raise PayloadTooLarge(f"the file is larger than {settings.import_max_bytes} bytes; split it", field="file")
                digest.update(chunk)
                out.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return StoredUpload(path, digest.hexdigest(), size)


def check_header(stored: StoredUpload, mapping: Mapping[str, str], definitions: Mapping[str, Any], delimiter: str) -> None:
    """Reject a file or mapping that stops the whole import (422 naming the field) before queueing it."""
    try:
        with stored.path.open("rb") as file:
            ContactCsvReader(file, mapping, definitions, delimiter=delimiter)
    except ImportFileError as error:
        raise invalid(error.field, error.detail) from None


def fingerprint(stored: StoredUpload, mapping: Mapping[str, str], mode: str, delimiter: str) -> str:
    document = json.dumps({"file": stored.sha256, "mapping": mapping, "mode": mode, "delimiter": delimiter}, sort_keys=True)
    return hashlib.sha256(document.encode()).hexdigest()


def upload_path(settings: ContactsSettings, import_id: str) -> Path:
    return settings.imports_dir / f"{import_id}.csv"


async def create_import(
    session: AsyncSession,
    stored: StoredUpload,
    *,
    file_name: str | None,
    mapping: dict[str, str],
    mode: str,
    delimiter: str,
    settings: ContactsSettings,
) -> tuple[ImportJob, bool]:
    """Create the job of an upload, or return the job of the same upload made before; commits.

    Returns the job and whether it is new (or a failed job started again). The temporary file is
    moved to the job's path, or deleted when the job already exists.
    """
    try:
        check_header(stored, mapping, await load_definitions(session), delimiter)
        key = fingerprint(stored, mapping, mode, delimiter)
        existing = (await session.exec(select(ImportJob).where(ImportJob.fingerprint == key))).first()
        if existing is not None and existing.status != "failed":
            return existing, False

        job = existing or _new_job(key, stored, file_name, mapping, mode, delimiter)
        _reset(job)
        session.add(job)
        os.replace(stored.path, upload_path(settings, job.id))
        try:
            await session.commit()
        except IntegrityError:
            # The same file was uploaded at the same moment, and the other request's job is kept.
            await session.rollback()
            upload_path(settings, job.id).unlink(missing_ok=True)
            same = (await session.exec(select(ImportJob).where(ImportJob.fingerprint == key))).one()
            return same, False
    finally:
        stored.path.unlink(missing_ok=True)
    return job, True


def _new_job(key: str, stored: StoredUpload, file_name: str | None, mapping: dict[str, str], mode: str, delimiter: str) -> ImportJob:
    now = clock.now()
    return ImportJob(
        id=uuid.uuid4().hex,
        fingerprint=key,
        file_name=(file_name or "")[:255] or None,
        file_sha256=stored.sha256,
        bytes_total=stored.size,
        mapping=mapping,
        mode=mode,
        delimiter=delimiter,
        created_at=now,
        updated_at=now,
    )


def _reset(job: ImportJob) -> None:
    job.status = "queued"
    job.committed_line = 0
    job.bytes_read = 0
    job.report = {}
    job.error = None
    job.started_at = None
    job.finished_at = None
    job.updated_at = clock.now()


async def enqueue_import(redis: ArqRedis, settings: ContactsSettings, import_id: str) -> None:
    """Queue the job on the contacts worker; if Redis is down, the worker's sweep queues it later."""
    try:
        await redis.enqueue_job(
            RUN_IMPORT_JOB,
            import_id,
            _job_id=import_job_key(settings.namespace, import_id),
            _queue_name=queue_name(settings.namespace, settings.service_name),
        )
    except (RedisError, OSError) as error:
        log.warning("import.enqueue_failed", import_id=import_id, error=repr(error))


def import_job_key(namespace: str, import_id: str) -> str:
    return job_id(namespace, "import", import_id)


async def get_import(session: AsyncSession, import_id: str) -> ImportJob:
    job = await session.get(ImportJob, import_id)
    if job is None:
        raise NotFound(f"import {import_id} not found", import_id=import_id)
    return job
