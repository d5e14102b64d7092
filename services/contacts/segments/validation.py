"""Parse and validate a segment filter, reporting every problem with its path from the root."""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError

from services.contacts.attributes.types import AttributeDefinition
from services.contacts.instants import utc_range_problem
from services.contacts.segments.fields import (
    OPERATORS_BY_KIND,
    FieldSpec,
    UnknownFieldError,
    ValueKind,
    resolve_field,
)
from services.contacts.segments.filter import (
    AttributeCondition,
    BehaviourCondition,
    FilterNode,
    Operator,
    PropertyCondition,
    children,
    walk,
)
from services.contacts.stages.machine import FUNNEL, Stage

MAX_DEPTH = 10
MAX_CONDITIONS = 200
MAX_IN_VALUES = 500
MAX_TEXT_VALUE_LENGTH = 1000
# The cap of the scoring rule sets. Up to it every integer is exact as the float that the compiler
# binds, and SQLite could not bind an integer above 64 bits at all.
MAX_ABS_NUMBER = 1e15
# JSON nesting is checked before pydantic validates the data, so a hostile filter cannot exhaust the stack.
MAX_JSON_NESTING = 64

_ADAPTER: TypeAdapter[FilterNode] = TypeAdapter(FilterNode)
_ORDERED_OPERATORS = frozenset({Operator.GT, Operator.GTE, Operator.LT, Operator.LTE, Operator.BETWEEN})
_PATTERN_MESSAGES = {
    "field": "unknown field; use email, first_name, last_name, timezone, created_at, updated_at, stage, "
    "consent, consent.<topic>, company.domain, company.name, company.size, company.industry, "
    "score.<model> (optionally .total, .fit or .engagement) or attributes.<name>",
    "event": "an event type is lower-case letters, digits, '_', '.' and '-', starting with a letter",
    "property": "a property path is names of letters, digits, '_' and '-', joined by '.' for nested objects",
}

ScalarCheck = Callable[[object], str | None]
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_UNION_LOC_AFTER = {"all": "index", "any": "index", "not": "node"}


@dataclass(frozen=True, slots=True)
class FilterIssue:
    """One problem in a filter: where it is and what is wrong."""

    path: str
    message: str


class FilterValidationError(ValueError):
    """A filter with one or more problems, all listed in `issues`."""

    def __init__(self, issues: Sequence[FilterIssue]) -> None:
        self.issues = tuple(issues)
        super().__init__("; ".join(f"{issue.path}: {issue.message}" for issue in self.issues))


def parse_filter(
    data: object,
    *,
    attributes: Mapping[str, AttributeDefinition] | None = None,
    score_models: Collection[str] | None = None,
    root: str = "filter",
) -> FilterNode:
    """Return the filter in `data` (decoded JSON) as models, or raise FilterValidationError.

    With `attributes`, every attribute condition is checked against the definition of its attribute;
    without, attribute conditions are checked for shape only. With `score_models`, a score field must
    name one of them. `root` starts every error path.
    """
    if _json_nesting(data) > MAX_JSON_NESTING:
        message = f"the filter is nested more than {MAX_JSON_NESTING} levels deep"
        raise FilterValidationError([FilterIssue(root, message)])

    try:
        node = _ADAPTER.validate_python(data)
    except ValidationError as error:
        issues = [_issue_from_pydantic(entry, root) for entry in error.errors()]
        # The conditions that are well formed on their own are checked too, so that one response lists
        # a bad stage name beside a missing field elsewhere in the filter.
        issues += [issue for issue in _check_well_formed_parts(data, root, attributes, score_models) if issue not in issues]
        raise FilterValidationError(issues) from None

    issues = check_filter(node, attributes=attributes, score_models=score_models, root=root)
    if issues:
        raise FilterValidationError(issues)

    return node


def _check_well_formed_parts(
    data: object, path: str, attributes: Mapping[str, AttributeDefinition] | None, score_models: Collection[str] | None
) -> list[FilterIssue]:
    """Return the problems of the conditions under `data` that parse alone, in a filter that does not."""
    if not isinstance(data, dict):
        return []

    groups = [(key, data[key]) for key in ("all", "any") if isinstance(data.get(key), list)]
    if groups or "not" in data:
        issues = []
        for key, items in groups:
            for index, item in enumerate(items):
                issues += _check_well_formed_parts(item, f"{path}.{key}[{index}]", attributes, score_models)
        if "not" in data:
            issues += _check_well_formed_parts(data["not"], f"{path}.not", attributes, score_models)
        return issues

    try:
        condition = _ADAPTER.validate_python(data)
    except ValidationError:
        return []
    return check_filter(condition, attributes=attributes, score_models=score_models, root=path)


def load_filter(data: object) -> FilterNode:
    """Return a stored filter as models, checking its shape but not its values.

    The values were checked when the segment was saved, and a limit added since then must not stop
    the evaluation of a segment saved before it.
    """
    return _ADAPTER.validate_python(data)


def dump_filter(node: FilterNode) -> dict[str, Any]:
    """Return the JSON form of a filter, the same shape parse_filter accepts."""
    dumped: dict[str, Any] = _ADAPTER.dump_python(node, mode="json", by_alias=True, exclude_none=True)
    return dumped


def check_filter(
    node: FilterNode,
    *,
    attributes: Mapping[str, AttributeDefinition] | None = None,
    score_models: Collection[str] | None = None,
    root: str = "filter",
) -> list[FilterIssue]:
    """Return the problems that the models cannot see alone: sizes, field types and values."""
    issues = _check_size(node, root)

    for path, child in walk(node, root):
        if isinstance(child, AttributeCondition):
            issues.extend(_check_attribute_condition(child, path, attributes, score_models))
        elif isinstance(child, BehaviourCondition):
            for index, condition in enumerate(child.where):
                issues.extend(_check_property_condition(condition, f"{path}.where[{index}]"))

    return issues


def _check_size(node: FilterNode, root: str) -> list[FilterIssue]:
    issues = []
    depth = _depth(node)
    if depth > MAX_DEPTH:
        issues.append(FilterIssue(root, f"all, any and not are nested {depth} levels deep, more than {MAX_DEPTH}"))

    conditions = sum(1 for _, child in walk(node, root) if isinstance(child, AttributeCondition | BehaviourCondition))
    if conditions > MAX_CONDITIONS:
        issues.append(FilterIssue(root, f"the filter has {conditions} conditions, more than {MAX_CONDITIONS}"))

    return issues


def _depth(node: FilterNode) -> int:
    nested = children(node)
    if not nested:
        return 0

    return 1 + max(_depth(child) for _, child in nested)


def _check_attribute_condition(
    condition: AttributeCondition,
    path: str,
    attributes: Mapping[str, AttributeDefinition] | None,
    score_models: Collection[str] | None,
) -> list[FilterIssue]:
    try:
        spec = resolve_field(condition.field, attributes, score_models)
    except UnknownFieldError as error:
        return [FilterIssue(f"{path}.field", str(error))]

    if spec is None:
        return _check_value_shape(condition.op, condition.value, path, _scalar_of_any_kind, None)

    if condition.op not in OPERATORS_BY_KIND[spec.kind]:
        allowed = ", ".join(sorted(OPERATORS_BY_KIND[spec.kind]))
        message = f"{condition.op.value} does not apply to the {spec.kind.value} field {condition.field}; use {allowed}"
        return [FilterIssue(f"{path}.op", message)]

    def scalar_problem(value: object) -> str | None:
        return _scalar_problem(spec, condition.op, value)

    return _check_value_shape(condition.op, condition.value, path, scalar_problem, spec.kind)


def _check_property_condition(condition: PropertyCondition, path: str) -> list[FilterIssue]:
    if condition.op in _ORDERED_OPERATORS:
        return _check_value_shape(condition.op, condition.value, path, _number_problem, ValueKind.NUMBER)

    if condition.op in (Operator.CONTAINS, Operator.STARTS_WITH):
        return _check_value_shape(condition.op, condition.value, path, _text_problem, ValueKind.TEXT)

    return _check_value_shape(condition.op, condition.value, path, _scalar_of_any_kind, None)


def _check_value_shape(
    op: Operator, value: object, path: str, scalar_problem: ScalarCheck, kind: ValueKind | None
) -> list[FilterIssue]:
    value_path = f"{path}.value"

    if op is Operator.EXISTS:
        return [] if isinstance(value, bool) else [FilterIssue(value_path, "exists needs the value true or false")]

    if op is Operator.IN:
        return _check_list(value, value_path, scalar_problem)

    if op is Operator.BETWEEN:
        return _check_between(value, value_path, scalar_problem, kind)

    problem = scalar_problem(value)
    return [] if problem is None else [FilterIssue(value_path, problem)]


def _check_list(value: object, path: str, scalar_problem: ScalarCheck) -> list[FilterIssue]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_IN_VALUES:
        return [FilterIssue(path, f"in needs a list of 1 to {MAX_IN_VALUES} values")]

    issues = []
    for index, item in enumerate(value):
        problem = scalar_problem(item)
        if problem is not None:
            issues.append(FilterIssue(f"{path}[{index}]", problem))

    return issues


def _check_between(value: object, path: str, scalar_problem: ScalarCheck, kind: ValueKind | None) -> list[FilterIssue]:
    if not isinstance(value, list) or len(value) != 2:
        return [FilterIssue(path, "between needs a list of two values, [low, high]")]

    issues = []
    for index, item in enumerate(value):
        problem = scalar_problem(item)
        if problem is not None:
            issues.append(FilterIssue(f"{path}[{index}]", problem))

    if not issues and _is_reversed(value[0], value[1], kind):
        issues.append(FilterIssue(path, f"the low end {value[0]!r} is above the high end {value[1]!r}"))

    return issues


def _is_reversed(low: Any, high: Any, kind: ValueKind | None) -> bool:
    if kind is ValueKind.STAGE:
        return FUNNEL.index(Stage(low.strip().lower())) > FUNNEL.index(Stage(high.strip().lower()))

    if kind is ValueKind.DATETIME:
        return dt.datetime.fromisoformat(low) > dt.datetime.fromisoformat(high)

    if kind in (ValueKind.NUMBER, ValueKind.DATE):
        return bool(low > high)

    # Without a known kind the two ends may not even be comparable, so the order is not checked.
    return False


def _scalar_problem(spec: FieldSpec, op: Operator, value: object) -> str | None:
    checker = _SCALAR_CHECKS[spec.kind]
    problem = checker(value)
    if problem is not None:
        return problem

    if spec.kind is ValueKind.STAGE:
        return _stage_problem(op, str(value))

    if spec.kind is ValueKind.ENUM and spec.allowed:
        return _allowed_problem(str(value), spec.allowed)

    return None


def _stage_problem(op: Operator, value: str) -> str | None:
    stage_name = value.strip().lower()
    if stage_name not in {stage.value for stage in Stage}:
        return f"{value!r} is not a stage; the stages are {', '.join(stage.value for stage in Stage)}"

    if op in _ORDERED_OPERATORS and Stage(stage_name) not in FUNNEL:
        return f"{stage_name} has no place in the funnel order, so {op.value} cannot compare with it"

    return None


def _allowed_problem(value: str, allowed: Sequence[str]) -> str | None:
    if value.casefold() in {item.casefold() for item in allowed}:
        return None

    return f"{value!r} is not one of the allowed values: {', '.join(repr(item) for item in allowed)}"


def _text_problem(value: object) -> str | None:
    if not isinstance(value, str) or not value:
        return "expected a non-empty string"

    if len(value) > MAX_TEXT_VALUE_LENGTH:
        return f"the text has {len(value)} characters, more than the maximum of {MAX_TEXT_VALUE_LENGTH}"

    return None


def _number_problem(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "expected a number"

    if isinstance(value, float) and not math.isfinite(value):
        return "expected a finite number"

    if abs(value) > MAX_ABS_NUMBER:
        return f"{value!r} is out of range; use a number of at most {MAX_ABS_NUMBER:.0e} in magnitude"

    return None


def _boolean_problem(value: object) -> str | None:
    return None if isinstance(value, bool) else "expected true or false"


def _date_problem(value: object) -> str | None:
    if not isinstance(value, str) or not _ISO_DATE.fullmatch(value):
        return "expected a date as YYYY-MM-DD"

    try:
        dt.date.fromisoformat(value)
    except ValueError as error:
        return f"{value!r} is not a calendar date: {error}"

    return None


def _datetime_problem(value: object) -> str | None:
    if not isinstance(value, str):
        return "expected an ISO 8601 date and time with an offset, such as 2024-05-01T10:00:00Z"

    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return f"{value!r} is not an ISO 8601 date and time"

    if parsed.tzinfo is None:
        return f"{value!r} has no UTC offset; add Z or +hh:mm"

    return utc_range_problem(parsed)


def _scalar_of_any_kind(value: object) -> str | None:
    if isinstance(value, str):
        return _text_problem(value)

    if isinstance(value, bool):
        return None

    if isinstance(value, int | float):
        return _number_problem(value)

    return "expected a string, a number or true/false"


_SCALAR_CHECKS = {
    ValueKind.TEXT: _text_problem,
    ValueKind.ENUM: _text_problem,
    ValueKind.NUMBER: _number_problem,
    ValueKind.BOOLEAN: _boolean_problem,
    ValueKind.DATE: _date_problem,
    ValueKind.DATETIME: _datetime_problem,
    ValueKind.LIST: _text_problem,
    ValueKind.STAGE: _text_problem,
}


def _issue_from_pydantic(entry: Mapping[str, Any], root: str) -> FilterIssue:
    loc = entry["loc"]
    message = entry["msg"]

    if entry["type"] == "extra_forbidden":
        message = "unknown key"
    elif entry["type"] == "missing":
        message = "required"
    elif entry["type"] == "value_error":
        message = str(entry["ctx"]["error"])
    elif entry["type"] == "string_pattern_mismatch" and loc and loc[-1] in _PATTERN_MESSAGES:
        message = _PATTERN_MESSAGES[str(loc[-1])]

    return FilterIssue(_format_loc(loc, root), message)


def _format_loc(loc: Sequence[str | int], root: str) -> str:
    """Turn a pydantic location into a path, dropping the union tags pydantic adds at each node."""
    path = root
    expect = "node"

    for part in loc:
        if expect == "node":
            expect = "field_of:" + str(part)
            continue

        path += f"[{part}]" if isinstance(part, int) else f".{part}"
        expect = _next_expectation(expect, part)

    return path


def _next_expectation(expect: str, part: str | int) -> str:
    tag = expect.removeprefix("field_of:")
    if expect.startswith("field_of:") and tag in _UNION_LOC_AFTER and part == tag:
        return _UNION_LOC_AFTER[tag]

    if expect == "index":
        return "node"

    return "plain"


def _json_nesting(data: object) -> int:
    deepest = 0
    pending: list[tuple[object, int]] = [(data, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            values = item.values() if isinstance(item, dict) else item
            pending.extend((value, depth + 1) for value in values if isinstance(value, dict | list))

    return deepest
