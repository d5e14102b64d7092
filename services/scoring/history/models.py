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
    """The latest known attributes, company and stage of a contact, as the contacts service published them."""

    __tablename__ = "contact_facts"

    contact_id: str = Field(primary_key=True, max_length=32)
    facts: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    stage: str = Field(default="subscriber", max_length=32)
    updated_at: datetime = Field(sa_type=UTCDateTime)
