"""A contact's current score per model."""

from datetime import datetime

from sqlmodel import Field

from services.kit.db import UTCDateTime
from services.scoring.db import ScoringBase


class ContactScore(ScoringBase, table=True):  # type: ignore[call-arg]
    __tablename__ = "contact_score"

    contact_id: str = Field(primary_key=True, max_length=32)
    model: str = Field(primary_key=True, max_length=64)
    total: float = 0.0
    fit: float = 0.0
    engagement: float = 0.0
    updated_at: datetime = Field(sa_type=UTCDateTime)
