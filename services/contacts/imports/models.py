"""The import job table: one row per uploaded file, with its progress and report."""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON
from sqlmodel import Field

from services.contacts.db import ContactsBase
from services.kit.db import UTCDateTime


class ImportJob(ContactsBase, table=True):  # type: ignore[call-arg]
    __tablename__ = "import_job"

    id: str = Field(primary_key=True, max_length=32)
    # SHA-256 of the file, the mapping and the mode: the same upload twice is the same job.
    fingerprint: str = Field(max_length=64, unique=True)
    file_name: str | None = Field(default=None, max_length=255)
    file_sha256: str = Field(max_length=64)
    bytes_total: int = 0
    mapping: dict[str, str] = Field(sa_type=JSON)
    mode: str = Field(max_length=16)
    delimiter: str = Field(default=",", max_length=1)
    # queued, running, done or failed.
    status: str = Field(default="queued", max_length=16, index=True)
    # The last line whose row is committed; a restarted job resumes after it.
    committed_line: int = 0
    bytes_read: int = 0
    report: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    error: str | None = None
    attempts: int = 0
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
