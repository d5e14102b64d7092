"""The scoring service's own copy of what it scores: behaviour events and contact facts.

Rescoring and simulation replay this history, so scoring never reads another service's tables.
"""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index
from sqlmodel import Field

from services.kit.db import UTCDateTime
from services.scoring.db import ScoringBase


class ScoredEvent(ScoringBase, table=True):  # type: ignore[call-arg]
    __tablename__ = "scored_event"
    __table_args__ = (Index("ix_scored_event_contact_occurred", "contact_id", "occurred_at"),)

    id: str = Field(primary_key=True, max_length=128)
    contact_id: str = Field(max_length=32)
    type: str = Field(max_length=64)
    occurred_at: datetime = Field(sa_type=UTCDateTime)
    properties: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)


class ContactFacts(ScoringBase, table=True):  # type: ignore[call-arg]
    """The latest known attributes, company and stage of a contact, as the contacts service published them.

    The row is also the contact's lock: every change to a contact's scores first updates `revision`,
    which serialises scoring workers per contact (a row lock on PostgreSQL, the write lock on SQLite).
    """

    __tablename__ = "contact_facts"

    contact_id: str = Field(primary_key=True, max_length=32)
    facts: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    stage: str = Field(default="subscriber", max_length=32)
    updated_at: datetime = Field(sa_type=UTCDateTime)
    # When the snapshot in `facts` and the stage were published, so an older message arriving late is ignored.
    facts_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    stage_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Every stage the contact has been in, so calibration can tell who ever became an SQL or a customer.
    stages_reached: list[str] = Field(default_factory=list, sa_type=JSON)
    revision: int = 0


class ErasedContact(ScoringBase, table=True):  # type: ignore[call-arg]
    """A contact whose data was erased: late events for it are dropped instead of scored again.

    Only a one-way hash of the id is kept, so no row names the person.
    """

    __tablename__ = "erased_contact"

    contact_hash: str = Field(primary_key=True, max_length=64)
    erased_at: datetime = Field(sa_type=UTCDateTime)
