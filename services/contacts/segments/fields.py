"""The value kind of each filter field path, so conditions can be checked against it."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum

from services.contacts.attributes.types import AttributeDefinition, AttributeType
from services.contacts.segments.filter import Operator
from services.contacts.stages.machine import Stage

CONSENT_STATUSES = ("subscribed", "unsubscribed", "bounced", "complained")


class ValueKind(StrEnum):
    TEXT = "text"
    ENUM = "enum"
    NUMBER = "number"
    BOOLEAN = "boolean"
    DATE = "date"
    DATETIME = "datetime"
    LIST = "list"
    STAGE = "stage"


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """The kind of value a field holds; `allowed` lists the values of an enum or stage field."""

    kind: ValueKind
    allowed: tuple[str, ...] = ()


OPERATORS_BY_KIND: dict[ValueKind, frozenset[Operator]] = {
    ValueKind.TEXT: frozenset(
        {Operator.EQ, Operator.NEQ, Operator.IN, Operator.CONTAINS, Operator.STARTS_WITH, Operator.EXISTS}
    ),
    ValueKind.ENUM: frozenset({Operator.EQ, Operator.NEQ, Operator.IN, Operator.EXISTS}),
    ValueKind.NUMBER: frozenset(
        {
            Operator.EQ,
            Operator.NEQ,
            Operator.IN,
            Operator.GT,
            Operator.GTE,
            Operator.LT,
            Operator.LTE,
            Operator.BETWEEN,
            Operator.EXISTS,
        }
    ),
    ValueKind.BOOLEAN: frozenset({Operator.EQ, Operator.NEQ, Operator.EXISTS}),
    ValueKind.DATE: frozenset(
        {
            Operator.EQ,
            Operator.NEQ,
            Operator.IN,
            Operator.GT,
            Operator.GTE,
            Operator.LT,
            Operator.LTE,
            Operator.BETWEEN,
            Operator.EXISTS,
        }
    ),
    ValueKind.DATETIME: frozenset(
        {Operator.GT, Operator.GTE, Operator.LT, Operator.LTE, Operator.BETWEEN, Operator.EXISTS}
    ),
    ValueKind.LIST: frozenset({Operator.CONTAINS, Operator.IN, Operator.EXISTS}),
    # A contact always has a stage, so `exists` would always be true.
    ValueKind.STAGE: frozenset(
        {Operator.EQ, Operator.NEQ, Operator.IN, Operator.GT, Operator.GTE, Operator.LT, Operator.LTE, Operator.BETWEEN}
    ),
}

_STATIC_FIELDS: dict[str, FieldSpec] = {
    "email": FieldSpec(ValueKind.TEXT),
    "first_name": FieldSpec(ValueKind.TEXT),
    "last_name": FieldSpec(ValueKind.TEXT),
    "timezone": FieldSpec(ValueKind.TEXT),
    "created_at": FieldSpec(ValueKind.DATETIME),
    "updated_at": FieldSpec(ValueKind.DATETIME),
    "company.domain": FieldSpec(ValueKind.TEXT),
    "company.name": FieldSpec(ValueKind.TEXT),
    "company.industry": FieldSpec(ValueKind.TEXT),
    "company.size": FieldSpec(ValueKind.NUMBER),
    "stage": FieldSpec(ValueKind.STAGE, tuple(stage.value for stage in Stage)),
}

_KIND_BY_ATTRIBUTE_TYPE = {
    AttributeType.STRING: ValueKind.TEXT,
    AttributeType.NUMBER: ValueKind.NUMBER,
    AttributeType.BOOLEAN: ValueKind.BOOLEAN,
    AttributeType.DATE: ValueKind.DATE,
    AttributeType.ENUM: ValueKind.ENUM,
    AttributeType.STRING_LIST: ValueKind.LIST,
}


class UnknownFieldError(ValueError):
    """A field path that names no defined attribute or score model."""


def resolve_field(
    path: str,
    attributes: Mapping[str, AttributeDefinition] | None,
    score_models: Collection[str] | None,
) -> FieldSpec | None:
    """Return what `path` holds; None when it is an attribute and no definitions were given.

    Raises UnknownFieldError for an undefined attribute, or an unknown score model when
    `score_models` is given. `path` has already matched FIELD_PATH_PATTERN.
    """
    static = _STATIC_FIELDS.get(path)
    if static is not None:
        return static

    if path == "consent" or path.startswith("consent."):
        return FieldSpec(ValueKind.ENUM, CONSENT_STATUSES)

    if path.startswith("score."):
        return _score_field(path, score_models)

    return _attribute_field(path.removeprefix("attributes."), attributes)


def _score_field(path: str, score_models: Collection[str] | None) -> FieldSpec:
    model = path.split(".")[1]
    if score_models is not None and model not in score_models:
        known = ", ".join(sorted(score_models)) or "none"
        raise UnknownFieldError(f"there is no score model named {model!r}; the models are: {known}")

    return FieldSpec(ValueKind.NUMBER)


def _attribute_field(name: str, attributes: Mapping[str, AttributeDefinition] | None) -> FieldSpec | None:
    if attributes is None:
        return None

    definition = attributes.get(name)
    if definition is None:
        raise UnknownFieldError(f"no attribute named {name!r} is defined")

    return FieldSpec(_KIND_BY_ATTRIBUTE_TYPE[definition.type], tuple(definition.allowed_values or ()))
