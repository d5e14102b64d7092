"""A contact's current score per model, and the ledger row behind every point of it."""

from datetime import datetime

from sqlalchemy import JSON, Index, UniqueConstraint
from sqlmodel import Field

from services.kit.db import UTCDateTime
from services.scoring.db import ScoringBase


class ContactScore(ScoringBase, table=True):  # type: ignore[call-arg]
    """The score of one contact under one model, as computed at `updated_at`.

    Decay keeps working after `updated_at`, so readers recompute the score from the ledger at the
    current time; this row is the snapshot that was published as score.changed.
    """

    __tablename__ = "contact_score"
    __table_args__ = (Index("ix_contact_score_model_contact", "model", "contact_id"),)

    contact_id: str = Field(primary_key=True, max_length=32)
    model: str = Field(primary_key=True, max_length=64)
    total: float = 0.0
    fit: float = 0.0
    engagement: float = 0.0
    version: int | None = None
    updated_at: datetime = Field(sa_type=UTCDateTime)


class LedgerRow(ScoringBase, table=True):  # type: ignore[call-arg]
    """One change of a contact's score: the rule, rule-set version and event that explain it.

    Engagement and pattern rows carry the event id as their key, unique per model and rule, so an
    event earns a rule's points once however often it is delivered. Fit rows have no event id.
    """

    __tablename__ = "score_ledger"
    __table_args__ = (
        UniqueConstraint("model", "rule", "event_id", name="uq_score_ledger_model_rule_event"),
        Index("ix_score_ledger_contact_model", "contact_id", "model"),
    )

    id: int | None = Field(default=None, primary_key=True)
    contact_id: str = Field(max_length=32)
    model: str = Field(max_length=64)
    version: int
    rule: str = Field(max_length=64)
    kind: str = Field(max_length=16)
    points: int
    rule_points: int
    reason: str = Field(max_length=16)
    event_id: str | None = Field(default=None, max_length=128)
    event_ids: list[str] = Field(default_factory=list, sa_type=JSON)
    occurred_at: datetime = Field(sa_type=UTCDateTime)
    recorded_at: datetime = Field(sa_type=UTCDateTime)
    # What wrote the row: "event", "contact" (a change of the contact's facts) or "rescore".
    source: str = Field(max_length=16)
