"""Tables of sequences and their versions."""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, UniqueConstraint
from sqlmodel import Field

from services.kit.db import UTCDateTime
from services.sequencer.db import SequencerBase


class Sequence(SequencerBase, table=True):  # type: ignore[call-arg]
    """A drip sequence: its status and the version that new enrolments start on.

    Status moves draft → active ⇄ paused. Editing a sequence that was ever activated adds a version,
    and enrolled contacts finish the version they started.
    """

    __tablename__ = "sequence"

    id: str = Field(primary_key=True, max_length=40)
    name: str = Field(max_length=200)
    status: str = Field(default="draft", max_length=16, index=True)
    current_version: int = 1
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)
    activated_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class SequenceVersion(SequencerBase, table=True):  # type: ignore[call-arg]
    """One version of a sequence's definition, as validated (every step has its id)."""

    __tablename__ = "sequence_version"
    __table_args__ = (UniqueConstraint("sequence_id", "version", name="uq_sequence_version_number"),)

    id: int | None = Field(default=None, primary_key=True)
    sequence_id: str = Field(foreign_key="sequence.id", index=True, max_length=40)
    version: int
    definition: dict[str, Any] = Field(sa_type=JSON)
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)
