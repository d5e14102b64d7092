"""Response bodies of the nurturing reports; `figures` defines every number in them."""

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class ReportWindow(BaseModel):
    since: datetime | None = Field(description="Only contacts created at or after this instant")
    until: datetime | None = Field(description="Only contacts created before this instant")


class StageCount(BaseModel):
    stage: str
    current: int = Field(description="Contacts at this stage now, erased ones included through their tombstone")
    reached: int = Field(description="Contacts that reached this stage, or a later funnel stage")


class Conversion(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_stage: str = Field(serialization_alias="from")
    to_stage: str = Field(serialization_alias="to")
    reached_from: int
    reached_to: int
    rate: float | None = Field(ge=0, le=1, description="reached_to / reached_from; null when reached_from is 0")


class FunnelReport(ReportWindow):
    generated_at: datetime
    contacts: int = Field(description="Contacts counted, erased ones included")
    erased: int = Field(description="Erased contacts counted through their tombstone")
    erased_left_out: int = Field(description="Erased contacts left out because a window was given")
    stages: list[StageCount]
    conversions: list[Conversion]
    mql_to_sql_rate: float | None = Field(ge=0, le=1)


class StageTime(BaseModel):
    stage: str
    completed_stays: int
    open_stays: int = Field(description="Stays not ended yet; they are not in the percentiles")
    median_seconds: float | None
    p90_seconds: float | None


class StageTimesReport(ReportWindow):
    generated_at: datetime
    stages: list[StageTime]


class NurtureGroup(BaseModel):
    leads: int
    customers: int
    conversion_rate: float | None = Field(ge=0, le=1, description="customers / leads; null when leads is 0")


class NurtureImpactReport(ReportWindow):
    generated_at: datetime
    nurtured: NurtureGroup
    not_nurtured: NurtureGroup
    rate_difference: float | None = Field(
        ge=-1, le=1, description="nurtured.conversion_rate minus not_nurtured.conversion_rate; null when either is"
    )
    erased_left_out: int = Field(description="Erased contacts that reached lead, left out because their tombstone does not say whether they were nurtured")
