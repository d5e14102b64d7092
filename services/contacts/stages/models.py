"""Stored stage definitions (every version) and the stage history of each contact."""

from datetime import datetime
from typing import TYPE_CHECKING, Any, Optional

from sqlalchemy import JSON, Index, UniqueConstraint
from sqlmodel import Field, Relationship

from services.contacts.db import ContactsBase
from services.kit.db import UTCDateTime

if TYPE_CHECKING:
    from services.contacts.people.models import Contact


class StageDefinitionVersion(ContactsBase, table=True):  # type: ignore[call-arg]
    """One version of a stage's written definition; version 1 of each stage is the built-in default."""

    __tablename__ = "stage_definition"
    __table_args__ = (UniqueConstraint("stage", "version", name="uq_stage_definition_stage_version"),)

    id: int | None = Field(default=None, primary_key=True)
    stage: str = Field(max_length=32)
    version: int
    title: str = Field(max_length=200)
    definition: str
    entry_criteria: list[str] = Field(sa_type=JSON)
    approved_by: dict[str, Any] = Field(sa_type=JSON)
    created_at: datetime = Field(sa_type=UTCDateTime)


class StageChange(ContactsBase, table=True):  # type: ignore[call-arg]
    """One entry of a contact's stage history; `from_stage` is None for the stage it was created at."""

    __tablename__ = "stage_change"
    __table_args__ = (Index("ix_stage_change_contact_at", "contact_id", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    contact_id: str = Field(foreign_key="contact.id", ondelete="CASCADE", max_length=32)
    # Never loaded: the relationship makes the unit of work insert a new contact before this row.
    contact: Optional["Contact"] = Relationship(sa_relationship_kwargs={"lazy": "raise"})
    from_stage: str | None = Field(default=None, max_length=32)
    to_stage: str = Field(max_length=32)
    kind: str = Field(max_length=32)
    reason: str | None = Field(default=None, max_length=1000)
    actor: str = Field(max_length=200)
    at: datetime = Field(sa_type=UTCDateTime)
