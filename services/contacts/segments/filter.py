"""The segment filter language: a JSON tree of conditions, its pydantic models and its validation.

A filter is one node. A node is exactly one of:

- `{"all": [node, ...]}`: every child matches (1 to 100 children);
- `{"any": [node, ...]}`: at least one child matches;
- `{"not": node}`: the child does not match;
- an attribute condition `{"field": path, "op": op, "value": value}`;
- a behaviour condition `{"event": type, "where": [...], "at_least": n, "at_most": n,
  "within_days": n | "between": {"start": t, "end": t}}`.

Example, "industry = SaaS and visited /pricing in the last 14 days":

    {"all": [
        {"field": "company.industry", "op": "eq", "value": "SaaS"},
        {"event": "page_view", "where": [{"property": "url", "op": "contains", "value": "/pricing"}],
         "within_days": 14}
    ]}

Fields of attribute conditions
------------------------------
| path                                  | kind     | notes                                             |
| ------------------------------------- | -------- | ------------------------------------------------- |
| `email`                               | text     | compared by the lower-cased match key             |
| `first_name`, `last_name`, `timezone` | text     |                                                   |
| `created_at`, `updated_at`            | datetime | ISO 8601 with an offset                           |
| `company.domain`, `company.name`, `company.industry` | text |                                         |
| `company.size`                        | number   | employees                                         |
| `consent`, `consent.<topic>`          | enum     | subscribed, unsubscribed, bounced, complained     |
| `stage`                               | stage    | ordered by the funnel; disqualified has no order  |
| `score.<model>`                       | number   | total of that model; also `.total`, `.fit`, `.engagement` |
| `attributes.<name>`                   | by type  | string → text, number, boolean, date, enum, string_list → list |

Meaning of each operator (a missing value is SQL NULL; for a list it is also the empty list)
-------------------------------------------------------------------------------------------
Text comparisons ignore case: compile them on `lower(column)` against the lower-cased value.

- `eq` / `neq`: equal / not equal. `neq` is exactly `not eq`, so it also matches a missing value
  (SQL `IS DISTINCT FROM`). On `stage` and enums the value must be one of the allowed values.
- `in`: the value is a list of 1 to 500 candidates; matches when the field equals one of them.
  On a list attribute it matches when the two lists share an element.
- `contains`: text contains the value as a substring; a list attribute has the value as an element.
- `starts_with`: text starts with the value.
- `gt`, `gte`, `lt`, `lte`: ordered comparison for numbers, dates, datetimes and stages. Stages
  compare by funnel position with subscriber lowest, and a contact at `disqualified` never matches.
- `between`: the value is `[low, high]` with low ≤ high; matches low ≤ field ≤ high, both ends included.
- `exists`: the value is true (field has a value) or false (field is missing).

Every operator but `neq` and `exists: false` is false for a missing value.

Behaviour conditions
--------------------
Count the contact's events of type `event` whose properties match every `where` condition and
whose `occurred_at` lies in the window: `within_days: n` means `occurred_at >= now - n × 24 h`
(a rolling window, evaluated at the time of evaluation); `between` means `start <= occurred_at <
end`; without either, all time. The condition matches when the count is at least `at_least` and at
most `at_most`. Without both it means "at least once". `at_most` also matches a contact with no such event, so
`"at_most": 0` means "never did it".

Property conditions take the operators above on `properties -> path` (a dotted path for nested
objects); `gt`, `gte`, `lt`, `lte` and `between` compare numbers only. A missing property matches
only `neq` and `exists: false`.

Validation errors carry a path from the root, such as `filter.all[1].within_days`.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Self, TypeAlias

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    field_validator,
    model_validator,
)

from services.contacts.instants import utc_range_problem

MAX_CHILDREN = 100
MAX_WHERE = 20
MAX_COUNT = 1_000_000
MAX_WINDOW_DAYS = 3650

# Contact fields, company fields and consent topics follow the names of the API; attribute names
# follow the attribute definitions.
FIELD_PATH_PATTERN = (
    r"^(email|first_name|last_name|timezone|created_at|updated_at|stage|consent"
    r"|company\.(domain|name|size|industry)"
    r"|consent\.[a-z0-9][a-z0-9_\-]{0,62}"
    r"|score\.[a-z0-9][a-z0-9_\-]{0,62}(\.(fit|engagement|total))?"
    r"|attributes\.[a-z][a-z0-9_]{0,62})$"
)
EVENT_TYPE_PATTERN = r"^[a-z][a-z0-9_.\-]{0,99}$"
PROPERTY_PATH_PATTERN = r"^[A-Za-z_][A-Za-z0-9_\-]{0,99}(\.[A-Za-z_][A-Za-z0-9_\-]{0,99}){0,4}$"


class Operator(StrEnum):
    EQ = "eq"
    NEQ = "neq"
    IN = "in"
    CONTAINS = "contains"
    STARTS_WITH = "starts_with"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"
    BETWEEN = "between"
    EXISTS = "exists"


_Strict = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class AttributeCondition(BaseModel):
    """A test on one field of the contact, its company, consent, stage, score or custom attributes."""

    model_config = _Strict

    field: Annotated[str, StringConstraints(pattern=FIELD_PATH_PATTERN)]
    op: Operator
    value: Any = None


class PropertyCondition(BaseModel):
    """A test on one property of an event, such as `url` of a page view."""

    model_config = _Strict

    property: Annotated[str, StringConstraints(pattern=PROPERTY_PATH_PATTERN)]
    op: Operator
    value: Any = None


class TimeRange(BaseModel):
    """A fixed window of time, start included and end excluded."""

    model_config = _Strict

    start: AwareDatetime
    end: AwareDatetime

    @field_validator("start", "end")
    @classmethod
    def _check_range(cls, value: datetime) -> datetime:
        problem = utc_range_problem(value)
        if problem is not None:
            raise ValueError(problem)

        return value

    @model_validator(mode="after")
    def _check_order(self) -> Self:
        if self.start >= self.end:
            raise ValueError("start must be before end")

        return self


class BehaviourCondition(BaseModel):
    """A count of the contact's events of one type, optionally filtered and limited to a window."""

    model_config = _Strict

    event: Annotated[str, StringConstraints(pattern=EVENT_TYPE_PATTERN)]
    where: list[PropertyCondition] = Field(default_factory=list, max_length=MAX_WHERE)
    at_least: int | None = Field(default=None, ge=0, le=MAX_COUNT)
    at_most: int | None = Field(default=None, ge=0, le=MAX_COUNT)
    within_days: int | None = Field(default=None, ge=1, le=MAX_WINDOW_DAYS)
    between: TimeRange | None = None

    @model_validator(mode="after")
    def _check_combination(self) -> Self:
        if self.within_days is not None and self.between is not None:
            raise ValueError("use within_days or between, not both")

        if self.at_least is not None and self.at_most is not None and self.at_least > self.at_most:
            bounds = f"at_least ({self.at_least}) is greater than at_most ({self.at_most})"
            raise ValueError(f"{bounds}, so nothing can match")

        return self

    @property
    def minimum(self) -> int:
        """The smallest matching count: `at_least`, or 1 when neither bound is given."""
        if self.at_least is not None:
            return self.at_least

        return 0 if self.at_most is not None else 1


class AllOf(BaseModel):
    model_config = _Strict

    all: list[FilterNode] = Field(min_length=1, max_length=MAX_CHILDREN)


class AnyOf(BaseModel):
    model_config = _Strict

    any: list[FilterNode] = Field(min_length=1, max_length=MAX_CHILDREN)


class NotOf(BaseModel):
    model_config = _Strict

    negated: FilterNode = Field(alias="not")


def _node_tag(data: object) -> str | None:
    if isinstance(data, BaseModel):
        return _TAGS_BY_CLASS.get(type(data))

    if not isinstance(data, dict):
        return None

    for key in ("all", "any", "not", "event", "field"):
        if key in data:
            return _TAG_BY_KEY[key]

    return None


FilterNode: TypeAlias = Annotated[
    Annotated[AllOf, Tag("all")]
    | Annotated[AnyOf, Tag("any")]
    | Annotated[NotOf, Tag("not")]
    | Annotated[BehaviourCondition, Tag("behaviour")]
    | Annotated[AttributeCondition, Tag("attribute")],
    Discriminator(
        _node_tag,
        custom_error_type="invalid_node",
        custom_error_message="expected an object with one of the keys all, any, not, field or event",
    ),
]

_TAG_BY_KEY = {"all": "all", "any": "any", "not": "not", "event": "behaviour", "field": "attribute"}
_TAGS_BY_CLASS: dict[type[BaseModel], str] = {
    AllOf: "all",
    AnyOf: "any",
    NotOf: "not",
    BehaviourCondition: "behaviour",
    AttributeCondition: "attribute",
}

AllOf.model_rebuild()
AnyOf.model_rebuild()
NotOf.model_rebuild()


def children(node: FilterNode) -> tuple[tuple[str, FilterNode], ...]:
    """Return the direct child nodes of `node`, each with its path suffix (`.all[0]`, `.not`)."""
    if isinstance(node, AllOf):
        return tuple((f".all[{index}]", child) for index, child in enumerate(node.all))

    if isinstance(node, AnyOf):
        return tuple((f".any[{index}]", child) for index, child in enumerate(node.any))

    if isinstance(node, NotOf):
        return ((".not", node.negated),)

    return ()


def walk(node: FilterNode, path: str = "filter") -> list[tuple[str, FilterNode]]:
    """Return every node under `node`, itself first, each with its path from the root."""
    found = [(path, node)]
    for suffix, child in children(node):
        found.extend(walk(child, path + suffix))

    return found

