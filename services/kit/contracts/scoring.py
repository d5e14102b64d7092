"""Events the scoring service publishes, and their payloads."""

from datetime import datetime

from pydantic import BaseModel, Field

SCORE_CHANGED = "score.changed"
MQL_REACHED = "score.mql_reached"
MQL_LOST = "score.mql_lost"
THRESHOLD_CROSSED = "score.threshold_crossed"


class ScoreChanged(BaseModel):
    contact_id: str
    model: str
    total: float
    fit: float
    engagement: float
    at: datetime


class MqlReached(BaseModel):
    """A contact's score crossed an MQL threshold upwards: contacts may promote a subscriber or lead to MQL.

    Published once per contact and model (and once per named threshold whose action is `mql`).
    """

    contact_id: str
    model: str
    score: float
    threshold: float
    at: datetime
    version: int | None = Field(default=None, description="rule-set version that scored the contact")
    trigger: str | None = Field(default=None, description="`mql:<model>` or `threshold:<name>`")


class MqlLost(BaseModel):
    """The score fell below the MQL threshold of a model whose option `demote_below_threshold` is on."""

    contact_id: str
    model: str
    score: float
    threshold: float
    at: datetime


class ThresholdCrossed(BaseModel):
    """A named threshold fired for a contact; `action` says what should happen (e.g. `notify_sales`)."""

    threshold: str
    model: str
    contact_id: str
    action: str
    score: float
    min_score: float
    source: str = Field(description="what evaluated it: event, contact, rescore, backfill or decay")
    at: datetime
