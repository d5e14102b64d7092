"""Score models and the immutable versions of their rule sets."""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, UniqueConstraint
from sqlmodel import Field

from services.kit.db import UTCDateTime
from services.scoring.db import ScoringBase


class ScoreModel(ScoringBase, table=True):  # type: ignore[call-arg]
    """A named score model: which rule-set version scores new events, and its options.

    `mql_threshold` repeats the threshold of the active version, so lists need not read documents.
    An archived model (`active` false) scores nothing new but keeps its scores and ledger.
    """

    __tablename__ = "score_model"

    name: str = Field(primary_key=True, max_length=64)
    description: str | None = Field(default=None, max_length=500)
    active_version: int
    mql_threshold: float
    # When true, a score falling below the MQL threshold (by decay or negative points) publishes
    # score.mql_lost and re-arms the MQL trigger. By default an MQL stays an MQL.
    demote_below_threshold: bool = False
    active: bool = True
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)


class RuleSetVersion(ScoringBase, table=True):  # type: ignore[call-arg]
    """One validated rule-set document of a model; versions are numbered 1, 2, ... and never change."""

    __tablename__ = "rule_set_version"
    __table_args__ = (UniqueConstraint("model", "version", name="uq_rule_set_version_model_version"),)

    id: int | None = Field(default=None, primary_key=True)
    model: str = Field(max_length=64)
    version: int
    document: dict[str, Any] = Field(sa_type=JSON)
    mql_threshold: float
    created_at: datetime = Field(sa_type=UTCDateTime)
