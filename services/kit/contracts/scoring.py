"""Events the scoring service publishes, and their payloads."""

from datetime import datetime

from pydantic import BaseModel

SCORE_CHANGED = "score.changed"
MQL_REACHED = "score.mql_reached"


class ScoreChanged(BaseModel):
    contact_id: str
    model: str
    total: float
    fit: float
    engagement: float
    at: datetime


class MqlReached(BaseModel):
    contact_id: str
    model: str
    score: float
    threshold: float
    at: datetime
