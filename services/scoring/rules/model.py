"""The declarative rule-set format, as pydantic models.

A rule set is data: it is stored as JSON, versioned, and validated here before anything runs it.
Validation errors carry pydantic locations, which `validation.py` turns into errors that name
the rule and the field.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StrictInt,
    Tag,
    ValidationInfo,
    field_validator,
)

from services.scoring.rules.regex_safety import compile_pattern

# Numbers up to 1e15 with at most 4 decimal places stay in positional notation when serialised,
# because Python switches to exponents below 1e-4 and from 1e16, and durable_rules 2.0.28 cannot
# parse exponents. The bound also keeps every integer exact in a double.
MAX_ABS_NUMBER = 1e15
NUMBER_DECIMALS = 4

MAX_RULES = 500
MAX_POINTS = 1000
MAX_LIST_VALUES = 1000
MAX_STRING_VALUE = 1000
MAX_CONDITIONS = 50
MAX_PATTERN_STEPS = 5
MAX_WINDOW_DAYS = 365

RuleName = Annotated[
    str,
    Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="unique slug, e.g. pricing-visit"),
]
FieldPath = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*){0,7}$",
        description="dot-separated path into the contact or event document, e.g. company.size",
    ),
]
EventType = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_.:-]{0,63}$")]
Description = Annotated[str, Field(max_length=500)]


def _reject_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected a number, got a boolean")
    return value


def _check_number(value: float | int) -> float | int:
    if not is_rule_number(value):
        raise ValueError(
            f"number {value!r} is out of range: use a finite value of at most {MAX_ABS_NUMBER:.0e} "
            f"in magnitude with at most {NUMBER_DECIMALS} decimal places"
        )
    return value


def is_rule_number(value: object) -> bool:
    """Tell whether `value` is a number the rule engine can compare exactly."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(value, float) and not math.isfinite(value):
        return False
    return abs(value) <= MAX_ABS_NUMBER and round(value, NUMBER_DECIMALS) == value


Number = Annotated[float | int, BeforeValidator(_reject_bool), AfterValidator(_check_number)]


class Operator(StrEnum):
    EQ = "eq"
    NE = "ne"
    LT = "lt"
    LTE = "lte"
    GT = "gt"
    GTE = "gte"
    BETWEEN = "between"
    IN = "in"
    NOT_IN = "not_in"
    CONTAINS = "contains"
    NOT_CONTAINS = "not_contains"
    STARTS_WITH = "starts_with"
    ENDS_WITH = "ends_with"
    MATCHES = "matches"
    EXISTS = "exists"
    NOT_EXISTS = "not_exists"


ORDERING_OPERATORS = frozenset({Operator.LT, Operator.LTE, Operator.GT, Operator.GTE})
TEXT_OPERATORS = frozenset(
    {Operator.CONTAINS, Operator.NOT_CONTAINS, Operator.STARTS_WITH, Operator.ENDS_WITH}
)
# Evaluated in Python before the facts reach the engine. The compiler module explains why.
PREDICATE_OPERATORS = TEXT_OPERATORS | {Operator.MATCHES, Operator.EXISTS, Operator.NOT_EXISTS}


class RuleKind(StrEnum):
    FIT = "fit"
    ENGAGEMENT = "engagement"
    PATTERN = "pattern"


class CapPeriod(StrEnum):
    """Calendar periods in UTC, with weeks starting on Monday (ISO 8601)."""

    DAY = "day"
    WEEK = "week"
    MONTH = "month"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldCondition(_Strict):
    """One test on one field: `{"field": "company.size", "op": "between", "value": [50, 500]}`.

    A missing field, or a value of another type than the condition's value, makes every
    operator false except `not_exists`. String comparisons ignore case unless
    `case_sensitive` is true.
    """

    field: FieldPath
    op: Operator
    case_sensitive: bool = False
    value: Any = Field(default=None, validate_default=True)

    @field_validator("value")
    @classmethod
    def _check_value(cls, value: Any, info: ValidationInfo) -> Any:
        op = info.data.get("op")
        if op is None:
            return value
        return check_condition_value(op, value, case_sensitive=info.data.get("case_sensitive", False))


class AllCondition(_Strict):
    all: list[Condition] = Field(min_length=1, max_length=MAX_CONDITIONS)


class AnyCondition(_Strict):
    any: list[Condition] = Field(min_length=1, max_length=MAX_CONDITIONS)


def _condition_tag(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        value = value.model_dump()
    if not isinstance(value, dict):
        return None
    if "all" in value:
        return "all-condition"
    if "any" in value:
        return "any-condition"
    return "field-condition"


Condition = Annotated[
    Annotated[FieldCondition, Tag("field-condition")]
    | Annotated[AllCondition, Tag("all-condition")]
    | Annotated[AnyCondition, Tag("any-condition")],
    Discriminator(
        _condition_tag,
        custom_error_type="invalid_condition",
        custom_error_message="expected a condition: {field, op, value}, {all: [...]} or {any: [...]}",
    ),
]
CONDITION_TAGS = frozenset({"field-condition", "all-condition", "any-condition"})

AllCondition.model_rebuild()
AnyCondition.model_rebuild()


class Cap(_Strict):
    """At most `max_points` points from one rule for one contact: in total, or per calendar period.

    For a rule with negative points the cap bounds the points deducted.
    """

    max_points: StrictInt = Field(gt=0, le=1_000_000)
    period: CapPeriod | None = None


class HalfLifeDecay(_Strict):
    """Each ledger entry loses half its points every `half_life_days` after its event."""

    type: Literal["half_life"]
    half_life_days: Number = Field(gt=0, le=3650)


class LinearDecay(_Strict):
    """The engagement score loses `points_per_day` for each day without activity after `grace_days`."""

    type: Literal["linear"]
    points_per_day: Number = Field(gt=0, le=MAX_POINTS)
    grace_days: Number = Field(default=0, ge=0, le=3650)


class NoDecay(_Strict):
    type: Literal["none"]


Decay = Annotated[HalfLifeDecay | LinearDecay | NoDecay, Field(discriminator="type")]
DECAY_TAGS = frozenset({"half_life", "linear", "none"})


class _RuleBase(_Strict):
    name: RuleName
    description: Description | None = None
    points: StrictInt = Field(ge=-MAX_POINTS, le=MAX_POINTS)

    @field_validator("points")
    @classmethod
    def _check_points(cls, points: int) -> int:
        if points == 0:
            raise ValueError("points must not be 0: a rule that changes nothing is a mistake")
        return points


class FitRule(_RuleBase):
    """Points for who the contact is: attributes of the contact and its company.

    A fit rule counts once while it matches, so it has no cap and never decays.
    """

    kind: Literal["fit"]
    when: Condition
    cap: Any = None
    decay: Any = None

    @field_validator("cap", "decay")
    @classmethod
    def _reject_engagement_options(cls, value: Any, info: ValidationInfo) -> None:
        if value is not None:
            raise ValueError(
                f"fit rules count once while they match, so they take no {info.field_name}. "
                "Use an engagement or pattern rule"
            )
        return None


class _EventRuleBase(_RuleBase):
    contact_when: Condition | None = None
    cap: Cap | None = None
    decay: Decay | None = None

    @field_validator("decay")
    @classmethod
    def _check_rule_decay(cls, decay: Any) -> Any:
        if isinstance(decay, LinearDecay):
            raise ValueError(
                "linear decay applies to the whole engagement score: set it on the rule set, "
                "and use half_life or none on a rule"
            )
        return decay


class EngagementRule(_EventRuleBase):
    """Points for one event of type `event` whose fields satisfy `where`."""

    kind: Literal["engagement"]
    event: EventType
    where: Condition | None = None


class PatternStep(_Strict):
    event: EventType
    where: Condition | None = None


class PatternRule(_EventRuleBase):
    """Points for events that happen in the order of `steps`, all within `within_days`."""

    kind: Literal["pattern"]
    steps: list[PatternStep] = Field(min_length=2, max_length=MAX_PATTERN_STEPS)
    within_days: Number = Field(gt=0, le=MAX_WINDOW_DAYS)


Rule = Annotated[FitRule | EngagementRule | PatternRule, Field(discriminator="kind")]
RULE_KIND_TAGS = frozenset(kind.value for kind in RuleKind)


class RuleSet(_Strict):
    """A score model's rules: `mql_threshold`, the default `decay` and the `rules`."""

    mql_threshold: Number = Field(gt=0, le=1_000_000)
    decay: Decay = NoDecay(type="none")
    rules: list[Rule] = Field(min_length=1, max_length=MAX_RULES)

    def rule(self, name: str) -> FitRule | EngagementRule | PatternRule | None:
        for rule in self.rules:
            if rule.name == name:
                return rule
        return None


def check_condition_value(op: Operator, value: Any, *, case_sensitive: bool = False) -> Any:
    """Check that `value` suits `op`, raising ValueError with a message for the rule author."""
    if op in (Operator.EXISTS, Operator.NOT_EXISTS):
        if value is not None:
            raise ValueError(f"{op} takes no value")
        return None
    if op in (Operator.EQ, Operator.NE):
        return _check_scalar(op, value)
    if op in ORDERING_OPERATORS:
        return _check_numeric(op, value)
    if op is Operator.BETWEEN:
        return _check_between(value)
    if op in (Operator.IN, Operator.NOT_IN):
        return _check_list(op, value)
    if op is Operator.MATCHES:
        return _check_pattern(value, case_sensitive)
    return _check_text(op, value)


def _check_scalar(op: Operator, value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _check_text(op, value)
    return _check_numeric(op, value)


def _check_numeric(op: Operator, value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{op} needs a number, got {value!r}")
    return _check_number(value)


def _check_text(op: Operator, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{op} needs a non-empty string, got {value!r}")
    if len(value) > MAX_STRING_VALUE:
        raise ValueError(f"{op} value is longer than {MAX_STRING_VALUE} characters")
    return value


def _check_between(value: Any) -> list[int | float]:
    if not isinstance(value, list) or len(value) != 2:
        raise ValueError(f"between needs [low, high], got {value!r}")
    low = _check_numeric(Operator.BETWEEN, value[0])
    high = _check_numeric(Operator.BETWEEN, value[1])
    if low > high:
        raise ValueError(f"between needs low <= high, got [{low}, {high}]")
    return [low, high]


def _check_list(op: Operator, value: Any) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"{op} needs a non-empty list, got {value!r}")
    if len(value) > MAX_LIST_VALUES:
        raise ValueError(f"{op} takes at most {MAX_LIST_VALUES} values")
    if all(isinstance(item, str) for item in value):
        return [_check_text(op, item) for item in value]
    if any(isinstance(item, bool | str) for item in value):
        raise ValueError(f"{op} needs a list of only strings or only numbers, got {value!r}")
    return [_check_numeric(op, item) for item in value]


def _check_pattern(value: Any, case_sensitive: bool) -> str:
    pattern = _check_text(Operator.MATCHES, value)
    # Case folding adds instructions, so the program-size limit is checked in the rule's own mode.
    compile_pattern(pattern, case_sensitive=case_sensitive)
    return pattern
