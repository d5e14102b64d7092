"""Score thresholds with an action, the per-contact state that makes them edge-triggered, and firings."""

from datetime import datetime

from sqlalchemy import Index
from sqlmodel import Field

from services.kit.db import UTCDateTime
from services.scoring.db import ScoringBase


class ScoreThreshold(ScoringBase, table=True):  # type: ignore[call-arg]
    """A `score >= min_score` trigger on one model. Only its API writes this row, never scoring itself."""

    __tablename__ = "score_threshold"

    name: str = Field(primary_key=True, max_length=64)
    model: str = Field(max_length=64, index=True)
    min_score: float
    action: str = Field(max_length=32)
    rearm: bool = False
    apply_to_existing: bool = False
    description: str | None = Field(default=None, max_length=500)
    revision: int = 1
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)


class ThresholdState(ScoringBase, table=True):  # type: ignore[call-arg]
    """Where one contact stands against one trigger: a model's MQL threshold or a named threshold.

    `trigger` is `mql:<model>` or `threshold:<name>`. `fired` is stored so a trigger fires once
    per contact unless it re-arms; `above` and `last_score` are the last observation.
    """

    __tablename__ = "threshold_state"

    contact_id: str = Field(primary_key=True, max_length=32)
    trigger: str = Field(primary_key=True, max_length=80)
    fired: bool = False
    above: bool = False
    last_score: float = 0.0
    fire_count: int = 0
    updated_at: datetime = Field(sa_type=UTCDateTime)


class ThresholdFiring(ScoringBase, table=True):  # type: ignore[call-arg]
    """One time a trigger fired for a contact and its action ran (an event was published)."""

    __tablename__ = "threshold_firing"
    __table_args__ = (
        Index("ix_threshold_firing_trigger_id", "trigger", "id"),
        Index("ix_threshold_firing_contact", "contact_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    trigger: str = Field(max_length=80)
    model: str = Field(max_length=64)
    contact_id: str = Field(max_length=32)
    action: str = Field(max_length=32)
    score: float
    threshold: float
    # What evaluated the trigger: "event", "contact", "rescore" or "backfill".
    source: str = Field(max_length=16)
    fired_at: datetime = Field(sa_type=UTCDateTime)
