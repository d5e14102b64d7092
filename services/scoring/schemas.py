"""Request and response bodies of the scoring API, shared by the service and the public gateway.

This module imports no database code, so the gateway can declare the same models for OpenAPI.
"""

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)
from pydantic_core import PydanticCustomError

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"

RULE_SET_EXAMPLE = {
    "mql_threshold": 50,
    "decay": {"type": "half_life", "half_life_days": 30},
    "rules": [
        {"name": "vp-title", "kind": "fit", "points": 10,
         "when": {"field": "attributes.job_title", "op": "contains", "value": "VP"}},
        {"name": "pricing-visit", "kind": "engagement", "event": "page_view", "points": 15,
         "where": {"field": "properties.url", "op": "matches", "value": "/pricing"}, "cap": {"max_points": 30}},
        {"name": "click-then-pricing", "kind": "pattern", "points": 20, "within_days": 7,
         "steps": [{"event": "email_clicked"},
                   {"event": "page_view", "where": {"field": "properties.url", "op": "matches", "value": "/pricing"}}]},
    ],
}


class RuleSetIn(BaseModel):
    """A rule set (see docs/scoring-rules.md) plus the model's options.

    Fields are checked by the scoring service, which names the rule and field of every problem,
    so they are typed loosely here.
    """

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [RULE_SET_EXAMPLE]})

    mql_threshold: Any = Field(default=None, description="a score at or above it makes the lead an MQL (> 0)")
    decay: Any = Field(default=None, description='`{"type": "none" | "half_life" | "linear", ...}`')
    rules: Any = Field(default=None, description="1 to 500 fit, engagement and pattern rules")
    description: StrictStr | None = Field(default=None, max_length=500, description="model option, not versioned")
    demote_below_threshold: StrictBool | None = Field(
        default=None,
        description="model option: a score falling below the MQL threshold publishes score.mql_lost and "
        "re-arms the MQL trigger (default false: an MQL stays an MQL)",
    )


class ModelOut(BaseModel):
    name: str
    description: str | None
    active: bool = Field(description="false once archived: it scores no new events")
    active_version: int
    mql_threshold: float
    demote_below_threshold: bool
    created_at: datetime
    updated_at: datetime


class ModelDetail(ModelOut):
    rule_set: dict[str, Any] = Field(description="the active version's rule-set document")


class ModelSaved(ModelDetail):
    version_created: bool = Field(description="true when this request stored a new version")


class VersionOut(BaseModel):
    model: str
    version: int
    mql_threshold: float
    active: bool
    created_at: datetime


class VersionDetail(VersionOut):
    rule_set: dict[str, Any]


class ModelPage(BaseModel):
    items: list[ModelOut]
    next_cursor: str | None = None


class VersionPage(BaseModel):
    items: list[VersionOut]
    next_cursor: str | None = None


class JobOut(BaseModel):
    id: str
    kind: Literal["rescore", "backfill"]
    model: str
    version: int | None = Field(description="rule-set version (rescore) or threshold revision (backfill)")
    threshold: str | None
    state: Literal["queued", "running", "done", "failed", "superseded"]
    total: int = Field(description="contacts to process, counted when the job was created")
    done: int
    progress: float = Field(description="done / total, from 0 to 1")
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class ThresholdIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(pattern=NAME_PATTERN, description="the score model whose score is compared")
    min_score: float = Field(gt=0, le=1_000_000, description="fires when the score becomes >= min_score")
    action: Literal["notify_sales", "mql"] = Field(
        description="notify_sales publishes score.threshold_crossed; mql also publishes score.mql_reached"
    )
    rearm: bool = Field(default=False, description="fire again on each new upward crossing after a drop below")
    apply_to_existing: bool = Field(
        default=False, description="on save, fire once for contacts already at or above min_score"
    )
    description: str | None = Field(default=None, max_length=500)


class ThresholdOut(BaseModel):
    name: str
    model: str
    min_score: float
    action: str
    rearm: bool
    apply_to_existing: bool
    description: str | None
    revision: int = Field(description="grows by one on each change of the definition")
    created_at: datetime
    updated_at: datetime
    firings: int = Field(description="how many times it has fired, over all contacts")


class ThresholdSaved(ThresholdOut):
    backfill_job: JobOut | None = Field(description="the backfill started by this save, if any")


class ThresholdPage(BaseModel):
    items: list[ThresholdOut]
    next_cursor: str | None = None


class FiringOut(BaseModel):
    id: int
    trigger: str = Field(description="`mql:<model>` or `threshold:<name>`")
    model: str
    contact_id: str
    action: str
    score: float
    threshold: float
    source: str = Field(description="what evaluated it: event, contact, rescore, backfill or decay")
    fired_at: datetime


class FiringPage(BaseModel):
    items: list[FiringOut]
    next_cursor: str | None = None


class LedgerItem(BaseModel):
    id: int
    rule: str
    kind: Literal["fit", "engagement", "pattern"]
    points: int = Field(description="points the row added when it was written")
    current_points: float = Field(description="what the row is worth now, after decay")
    rule_points: int = Field(description="points the rule grants per match; differs from points when capped")
    reason: Literal["matched", "capped", "fit_matched", "fit_unmatched"]
    description: str | None = Field(description="the rule's description, when it is still in the active version")
    event_id: str | None
    event_ids: list[str]
    version: int
    source: str = Field(description="event, contact (a change of the contact's facts) or rescore")
    occurred_at: datetime
    recorded_at: datetime


class ModelScore(BaseModel):
    model: str
    version: int | None = Field(description="rule-set version that last scored the contact")
    active_version: int
    total: float
    fit: float
    engagement: float = Field(description="after decay, at `at`")
    engagement_before_decay: int
    linear_decay: float
    mql_threshold: float
    mql: bool = Field(description="whether the MQL trigger of the model has fired for the contact")
    updated_at: datetime = Field(description="when the ledger last changed")
    ledger: list[LedgerItem]


class ContactScoreOut(BaseModel):
    contact_id: str
    at: datetime = Field(description="the time the scores were computed at")
    events_held: int = Field(description="events of the contact in the scoring history")
    models: dict[str, ModelScore]


# A pydantic union names each error after the member that failed (`outcome.literal['sql','customer']`,
# `outcome.OutcomeAttribute.equals.str`). The validators below check the input's shape first, so at
# most one member runs and every error field is a path in the request body.
OUTCOME_STAGES = ("sql", "customer")


def _check_outcome_value(value: Any) -> Any:
    if not isinstance(value, str | int | float):  # bool is a subclass of int
        raise PydanticCustomError("outcome_value_type", "Input should be a string, number or boolean")
    return value


class OutcomeAttribute(BaseModel):
    model_config = ConfigDict(extra="forbid")

    attribute: str = Field(min_length=1, max_length=200, description="a dot path into the contact's attributes")
    equals: Annotated[str | int | float | bool, BeforeValidator(_check_outcome_value)]


def _validate_outcome(value: Any, _handler: ValidatorFunctionWrapHandler) -> str | OutcomeAttribute:
    if isinstance(value, dict | OutcomeAttribute):
        return OutcomeAttribute.model_validate(value)
    if isinstance(value, str) and value in OUTCOME_STAGES:
        return value
    raise PydanticCustomError(
        "outcome_invalid", "Input should be 'sql', 'customer' or an object with attribute and equals"
    )


class CalibrationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: Annotated[Literal["sql", "customer"] | OutcomeAttribute, WrapValidator(_validate_outcome)] = Field(
        description='"sql" (reached sql, opportunity or customer), "customer", or an attribute equal to a value'
    )


class DecileOut(BaseModel):
    decile: int
    count: int
    conversions: int
    conversion_rate: float | None
    min_score: float | None
    max_score: float | None


class ThresholdChoiceOut(BaseModel):
    threshold: float
    sensitivity: float
    specificity: float
    youden_j: float


class CalibrationOut(BaseModel):
    model: str
    outcome: str
    at: datetime
    samples: int = Field(description="contacts the scoring service stores, each with its score under the model (0 without points)")
    conversions: int
    truncated: bool = Field(description="true when the sample stopped at the configured maximum")
    auc: float | None = Field(description="ROC AUC; null when only one outcome occurs")
    deciles: list[DecileOut]
    best_threshold: ThresholdChoiceOut | None = Field(description="the score with the highest Youden's J")
    current_threshold: ThresholdChoiceOut | None = Field(description="the model's MQL threshold, measured the same way")


class SimulateIn(RuleSetIn):
    sample_size: int = Field(default=20, ge=0, le=500, description="contact ids to list among those who would cross")


class HistogramBin(BaseModel):
    low: float
    high: float = Field(description="exclusive, except for the last bin")
    count: int


class Distribution(BaseModel):
    count: int
    min: float | None
    max: float | None
    mean: float | None
    quantiles: dict[str, float] = Field(description="p10, p25, p50, p75, p90 and p99")
    histogram: list[HistogramBin]


class CrossingSet(BaseModel):
    count: int
    sample: list[str]


class SimulationOut(BaseModel):
    model: str
    at: datetime
    contacts: int
    truncated: bool
    mql_threshold: float
    distribution: Distribution
    would_cross: CrossingSet = Field(description="contacts whose simulated score is at or above mql_threshold")
    newly_crossing: CrossingSet = Field(description="of those, the ones the model has not made MQL yet")
    no_longer_crossing: CrossingSet = Field(description="contacts the model made MQL that would stay below")


class ContactExport(BaseModel):
    contact_id: str
    facts: dict[str, Any] | None
    events: list[dict[str, Any]]
    scores: ContactScoreOut
    threshold_states: list[dict[str, Any]]
    firings: list[FiringOut]
