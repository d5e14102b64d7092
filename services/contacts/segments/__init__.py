"""Segments: the JSON filter language, its validation and what a filter depends on."""

from services.contacts.segments.fields import (
    CONSENT_STATUSES,
    OPERATORS_BY_KIND,
    FieldSpec,
    UnknownFieldError,
    ValueKind,
    resolve_field,
)
from services.contacts.segments.filter import (
    AllOf,
    AnyOf,
    AttributeCondition,
    BehaviourCondition,
    FilterNode,
    NotOf,
    Operator,
    PropertyCondition,
    TimeRange,
    children,
    walk,
)
from services.contacts.segments.validation import (
    FilterIssue,
    FilterValidationError,
    check_filter,
    dump_filter,
    load_filter,
    parse_filter,
)
from services.contacts.segments.windows import FilterDependencies, TimeWindow, filter_dependencies, time_windows

__all__ = [
    "AllOf",
    "AnyOf",
    "AttributeCondition",
    "BehaviourCondition",
    "CONSENT_STATUSES",
    "FieldSpec",
    "FilterDependencies",
    "FilterIssue",
    "FilterNode",
    "FilterValidationError",
    "NotOf",
    "OPERATORS_BY_KIND",
    "Operator",
    "PropertyCondition",
    "TimeRange",
    "TimeWindow",
    "UnknownFieldError",
    "ValueKind",
    "check_filter",
    "children",
    "dump_filter",
    "filter_dependencies",
    "load_filter",
    "parse_filter",
    "resolve_field",
    "time_windows",
    "walk",
]
