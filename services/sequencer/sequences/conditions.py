"""Stages and conditions on event properties and contact attributes, with their evaluation."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Literal

import re2  # type: ignore[import-untyped]
from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.sequencer.sequences.errors import FieldErrors

MAX_PATTERN_LENGTH = 300


class StrictModel(BaseModel):
    """Base of every definition model: unknown keys are errors, aliases and names both accepted."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Stage(StrEnum):
    """Lifecycle stages in their forward order; `disqualified` sits outside the order."""

    SUBSCRIBER = "subscriber"
    LEAD = "lead"
    MQL = "mql"
    SQL = "sql"
    OPPORTUNITY = "opportunity"
    CUSTOMER = "customer"
    DISQUALIFIED = "disqualified"


STAGE_ORDER: tuple[Stage, ...] = (
    Stage.SUBSCRIBER,
    Stage.LEAD,
    Stage.MQL,
    Stage.SQL,
    Stage.OPPORTUNITY,
    Stage.CUSTOMER,
)


def stage_reached(current: Stage | str | None, goal: Stage | str) -> bool:
    """Return whether a contact at `current` has reached `goal` or a later stage.

    `disqualified` reaches only itself, because it is no step along the funnel.
    """
    if current is None:
        return False

    current, goal = Stage(current), Stage(goal)
    if Stage.DISQUALIFIED in (current, goal):
        return current == goal
    return STAGE_ORDER.index(current) >= STAGE_ORDER.index(goal)


# --- conditions on event properties and contact attributes ---------------------------------------

ConditionOp = Literal[
    "equals",
    "not_equals",
    "contains",
    "starts_with",
    "ends_with",
    "matches",
    "exists",
    "in",
    "gt",
    "gte",
    "lt",
    "lte",
]

_NUMERIC_OPS = {"gt", "gte", "lt", "lte"}
_STRING_OPS = {"contains", "starts_with", "ends_with", "matches"}


class PropertyCondition(StrictModel):
    """A test on one value, found by a dotted path into event properties or contact attributes.

    `matches` takes a Python regular expression searched anywhere in the value; the other string
    operators compare text exactly (`contains`, `starts_with`, `ends_with`, `equals`).
    """

    property: str = Field(min_length=1, max_length=200)
    op: ConditionOp = "equals"
    value: Any = None

    @model_validator(mode="after")
    def _check_value(self) -> PropertyCondition:
        if self.op == "exists":
            if self.value is not None and not isinstance(self.value, bool):
                raise FieldErrors([(("value",), "must be true, false or omitted for 'exists'")])
            return self

        if self.op in _STRING_OPS and not isinstance(self.value, str):
            raise FieldErrors([(("value",), f"must be a string for '{self.op}'")])
        if self.op in _NUMERIC_OPS and (isinstance(self.value, bool) or not isinstance(self.value, int | float)):
            raise FieldErrors([(("value",), f"must be a number for '{self.op}'")])
        if self.op == "in" and not isinstance(self.value, list):
            raise FieldErrors([(("value",), "must be a list for 'in'")])
        if self.op == "matches":
            _compile_pattern(self.value)
        return self

    def matches_values(self, values: Mapping[str, Any]) -> bool:
        """Return whether the value at `property` in `values` passes this condition."""
        found, actual = _lookup(values, self.property)
        if self.op == "exists":
            return found == (self.value is not False)
        if not found or actual is None:
            return self.op == "not_equals"
        return _compare(self.op, actual, self.value)


@functools.lru_cache(maxsize=256)
def _compile_pattern(pattern: str) -> Any:
    # RE2 runs in time linear in the value, where Python's backtracking re could take exponential
    # time on a crafted contact field and stall the worker.
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise FieldErrors([(("value",), f"pattern is longer than {MAX_PATTERN_LENGTH} characters")])
    options = re2.Options()
    options.log_errors = False
    try:
        return re2.compile(pattern, options)
    except re2.error as error:
        reason = error.args[0].decode("utf-8", "replace") if error.args and isinstance(error.args[0], bytes) else str(error)
        message = f"invalid regular expression: {reason}; patterns use RE2 syntax, without lookaround or backreferences"
        raise FieldErrors([(("value",), message)]) from error


def _lookup(values: Mapping[str, Any], path: str) -> tuple[bool, Any]:
    current: Any = values
    for part in path.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return False, None
        current = current[part]
    return True, current


def _compare(op: str, actual: Any, expected: Any) -> bool:
    if op == "equals":
        return bool(actual == expected)
    if op == "not_equals":
        return bool(actual != expected)
    if op == "in":
        return actual in expected
    if op in _STRING_OPS:
        return _compare_text(op, str(actual), expected)
    return _compare_number(op, actual, expected)


def _compare_text(op: str, actual: str, expected: str) -> bool:
    if op == "contains":
        return expected in actual
    if op == "starts_with":
        return actual.startswith(expected)
    if op == "ends_with":
        return actual.endswith(expected)
    return _compile_pattern(expected).search(actual) is not None


def _compare_number(op: str, actual: Any, expected: float) -> bool:
    if isinstance(actual, bool) or not isinstance(actual, int | float):
        return False
    if op == "gt":
        return actual > expected
    if op == "gte":
        return actual >= expected
    if op == "lt":
        return actual < expected
    return actual <= expected


class EventMatch(StrictModel):
    """An event type plus conditions on its properties, e.g. a page_view whose url contains /pricing."""

    event_type: str = Field(min_length=1, max_length=100)
    conditions: list[PropertyCondition] = Field(default_factory=list, max_length=20)

    def matches(self, event_type: str, properties: Mapping[str, Any]) -> bool:
        """Return whether an event of `event_type` with `properties` matches."""
        if event_type != self.event_type:
            return False
        return all(condition.matches_values(properties) for condition in self.conditions)
