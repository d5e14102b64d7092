"""Stored segments and their current members."""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index
from sqlmodel import Field

from services.contacts.db import ContactsBase
from services.kit.db import UTCDateTime


class Segment(ContactsBase, table=True):  # type: ignore[call-arg]
    __tablename__ = "segment"

    id: str = Field(primary_key=True, max_length=32)
    name: str = Field(max_length=200)
    filter: dict[str, Any] = Field(sa_type=JSON)
    # What the filter reads, so a change re-evaluates only the segments it can affect.
    fields: list[str] = Field(default_factory=list, sa_type=JSON)
    event_types: list[str] = Field(default_factory=list, sa_type=JSON)
    # Rolling windows as [{"event": type, "days": n}]; empty when time alone never changes members.
    windows: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)
    next_window_check_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)


class SegmentMembership(ContactsBase, table=True):  # type: ignore[call-arg]
    __tablename__ = "segment_membership"
    __table_args__ = (Index("ix_segment_membership_contact", "contact_id"),)

    segment_id: str = Field(foreign_key="segment.id", ondelete="CASCADE", primary_key=True, max_length=32)
    contact_id: str = Field(foreign_key="contact.id", ondelete="CASCADE", primary_key=True, max_length=32)
    entered_at: datetime = Field(sa_type=UTCDateTime)
