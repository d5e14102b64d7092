"""Long-running scoring jobs (rescoring a model, backfilling a threshold) and their progress."""

from datetime import datetime

from sqlmodel import Field

from services.kit.db import UTCDateTime
from services.scoring.db import ScoringBase


class ScoringJob(ScoringBase, table=True):  # type: ignore[call-arg]
    """A job's definition and progress; the database, not Redis, is the record of what remains.

    `cursor` is the last contact id done: work goes in contact-id order and commits each chunk
    together with its progress, so a job restarted after a crash resumes after the last chunk.
    """

    __tablename__ = "scoring_job"

    id: str = Field(primary_key=True, max_length=32)
    kind: str = Field(max_length=16)
    model: str = Field(max_length=64)
    version: int | None = None
    threshold: str | None = Field(default=None, max_length=64)
    state: str = Field(default="queued", max_length=16, index=True)
    total: int = 0
    done: int = 0
    cursor: str | None = Field(default=None, max_length=32)
    error: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(sa_type=UTCDateTime)
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)
