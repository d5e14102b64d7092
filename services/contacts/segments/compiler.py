"""Compiling a segment filter into one parameterised SQLAlchemy Core condition on the contact table.

The condition is meant for `member_query`, which selects contact ids from the contact table joined
to its company. Every leaf condition is wrapped so it is never SQL NULL: `not` then means exactly
"does not match", and a missing value fails every operator but `neq` and `exists: false`, as the
filter language defines (see segments/filter.py). Values are always bound parameters.
"""

from __future__ import annotations

import datetime as dt
import itertools
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Boolean, Select, and_, case, exists, false, func, literal, not_, or_, select, true
from sqlalchemy.sql.elements import ColumnElement

from services.contacts.attributes.types import AttributeDefinition, AttributeType
from services.contacts.consent.models import OVERALL, ConsentState
from services.contacts.people.models import Company, Contact
from services.contacts.segments.filter import (
    AllOf,
    AnyOf,
    AttributeCondition,
    BehaviourCondition,
    FilterNode,
    NotOf,
    Operator,
    PropertyCondition,
)
from services.contacts.segments.json_sql import JsonSql, json_sql
from services.contacts.stages.machine import FUNNEL, parse_stage
from services.contacts.timeline.models import TimelineEvent

CONTACT = Contact.__table__  # type: ignore[attr-defined]
COMPANY = Company.__table__  # type: ignore[attr-defined]
TIMELINE = TimelineEvent.__table__  # type: ignore[attr-defined]
CONSENT = ConsentState.__table__  # type: ignore[attr-defined]

_TEXT, _NUMBER, _BOOLEAN, _DATE, _DATETIME, _LIST, _STAGE = "text", "number", "boolean", "date", "datetime", "list", "stage"
_TEXT_COLUMNS = {
    "email": CONTACT.c.email_key,
    "first_name": CONTACT.c.first_name,
    "last_name": CONTACT.c.last_name,
    "timezone": CONTACT.c.timezone,
    "company.domain": COMPANY.c.domain,
    "company.name": COMPANY.c.name,
    "company.industry": COMPANY.c.industry,
}
_KIND_OF_ATTRIBUTE = {
    AttributeType.STRING: _TEXT,
    AttributeType.NUMBER: _NUMBER,
    AttributeType.BOOLEAN: _BOOLEAN,
    AttributeType.DATE: _DATE,
    AttributeType.ENUM: _TEXT,
    AttributeType.STRING_LIST: _LIST,
}


def member_query(condition: ColumnElement[bool]) -> Select[Any]:
    """Return the ids of the contacts that match a compiled condition."""
    joined = CONTACT.outerjoin(COMPANY, COMPANY.c.id == CONTACT.c.company_id)
    return select(CONTACT.c.id).select_from(joined).where(condition)


class FilterCompiler:
    """Compile filters for one database dialect at one instant (rolling windows end at `now`)."""

    def __init__(
        self,
        dialect: str,
        now: dt.datetime,
        attributes: Mapping[str, AttributeDefinition],
        *,
        default_consent: str = "subscribed",
    ) -> None:
        self.json: JsonSql = json_sql(dialect)
        self.now = now
        self.attributes = attributes
        self.default_consent = default_consent
        self._aliases = itertools.count()

    def compile(self, node: FilterNode) -> ColumnElement[bool]:
        if isinstance(node, AllOf):
            return and_(*(self.compile(child) for child in node.all))

        if isinstance(node, AnyOf):
            return or_(*(self.compile(child) for child in node.any))

        if isinstance(node, NotOf):
            return not_(self.compile(node.negated))

        if isinstance(node, BehaviourCondition):
            return self._behaviour(node)

        return self._attribute(node)

    # Attribute conditions

    def _attribute(self, condition: AttributeCondition) -> ColumnElement[bool]:
        path = condition.field
        if path == "stage":
            return self._stage(condition.op, condition.value)

        if path == "consent" or path.startswith("consent."):
            return self._compare(self._consent(path.partition(".")[2]), _TEXT, condition.op, condition.value)

        if path in _TEXT_COLUMNS:
            return self._compare(_TEXT_COLUMNS[path], _TEXT, condition.op, _email_value(path, condition.value))

        if path in ("created_at", "updated_at"):
            return self._compare(CONTACT.c[path], _DATETIME, condition.op, condition.value)

        if path == "company.size":
            return self._compare(COMPANY.c.size, _NUMBER, condition.op, condition.value)

        if path.startswith("score."):
            parts = path.split(".")
            score_path = [parts[1], parts[2] if len(parts) > 2 else "total"]
            return self._compare(self.json.number(CONTACT.c.scores, score_path), _NUMBER, condition.op, condition.value)

        return self._custom_attribute(path.removeprefix("attributes."), condition)

    def _custom_attribute(self, name: str, condition: AttributeCondition) -> ColumnElement[bool]:
        definition = self.attributes.get(name)
        kind = _KIND_OF_ATTRIBUTE[definition.type] if definition is not None else _TEXT
        column, path = CONTACT.c.attributes, [name]
        if kind == _LIST:
            return self._list(column, path, condition.op, condition.value)

        accessor = {_NUMBER: self.json.number, _BOOLEAN: self.json.boolean}.get(kind, self.json.text)
        return self._compare(accessor(column, path), kind, condition.op, condition.value)

    def _consent(self, topic: str) -> ColumnElement[Any]:
        overall = func.coalesce(self._consent_status(OVERALL), self.default_consent)
        if not topic:
            return overall

        # A topic follows the overall status unless that is subscribed, when the topic's own one counts.
        return case((overall != "subscribed", overall), else_=func.coalesce(self._consent_status(topic), "subscribed"))

    def _consent_status(self, topic: str) -> ColumnElement[Any]:
        query = select(CONSENT.c.status).where(CONSENT.c.contact_id == CONTACT.c.id, CONSENT.c.topic == topic)
        return query.scalar_subquery()

    def _stage(self, op: Operator, value: Any) -> ColumnElement[bool]:
        stage = CONTACT.c.stage
        if op is Operator.EQ:
            return _sure(stage == parse_stage(value).value)
        if op is Operator.NEQ:
            return not_(_sure(stage == parse_stage(value).value))
        if op is Operator.IN:
            return _sure(stage.in_([parse_stage(item).value for item in value]))

        # Disqualified has no funnel position, so it matches no ordered comparison.
        position = case({name.value: index for index, name in enumerate(FUNNEL)}, value=stage)
        if op is Operator.BETWEEN:
            low, high = (FUNNEL.index(parse_stage(item)) for item in value)
            return _sure(position.between(low, high))
        return self._ordered(position, op, FUNNEL.index(parse_stage(value)))

    def _list(self, column: ColumnElement[Any], path: Sequence[str], op: Operator, value: Any) -> ColumnElement[bool]:
        if op is Operator.EXISTS:
            present = self.json.array_length(column, path) > 0
            return _sure(present) if value else not_(_sure(present))

        items = value if op is Operator.IN else [value]
        return _sure(self.json.array_has_any(column, path, [str(item).lower() for item in items]))

    # Values of one kind

    def _compare(self, expression: ColumnElement[Any], kind: str, op: Operator, value: Any) -> ColumnElement[bool]:
        if op is Operator.EXISTS:
            return expression.is_not(None) if value else expression.is_(None)

        if op is Operator.NEQ:
            return not_(self._compare(expression, kind, Operator.EQ, value))

        if kind == _TEXT:
            return _sure(self._text(expression, op, value))

        value = _bind_value(kind, value)
        if op is Operator.EQ:
            return _sure(expression == value)
        if op is Operator.IN:
            return _sure(expression.in_(list(value)))
        if op is Operator.BETWEEN:
            return _sure(expression.between(value[0], value[1]))
        return self._ordered(expression, op, value)

    def _text(self, expression: ColumnElement[Any], op: Operator, value: Any) -> ColumnElement[Any]:
        lowered = self.json.lower(expression)
        if op is Operator.IN:
            return lowered.in_([str(item).lower() for item in value])
        if op is Operator.CONTAINS:
            return lowered.contains(str(value).lower(), autoescape=True)
        if op is Operator.STARTS_WITH:
            return lowered.startswith(str(value).lower(), autoescape=True)
        return lowered == str(value).lower()

    def _ordered(self, expression: ColumnElement[Any], op: Operator, value: Any) -> ColumnElement[bool]:
        comparisons = {
            Operator.GT: expression > value,
            Operator.GTE: expression >= value,
            Operator.LT: expression < value,
            Operator.LTE: expression <= value,
        }
        return _sure(comparisons[op])

    # Behaviour conditions

    def _behaviour(self, condition: BehaviourCondition) -> ColumnElement[bool]:
        events = TIMELINE.alias(f"events_{next(self._aliases)}")
        conditions: list[ColumnElement[bool]] = [events.c.contact_id == CONTACT.c.id, events.c.type == condition.event]
        if condition.within_days is not None:
            conditions.append(events.c.occurred_at >= self.now - dt.timedelta(days=condition.within_days))
        if condition.between is not None:
            conditions.append(events.c.occurred_at >= condition.between.start)
            conditions.append(events.c.occurred_at < condition.between.end)
        conditions.extend(self._property(events.c.properties, where) for where in condition.where)

        if condition.at_most is None and condition.minimum == 1:
            return exists(select(literal(1)).select_from(events).where(*conditions))

        count = select(func.count()).select_from(events).where(*conditions).scalar_subquery()
        bounds = []
        if condition.minimum > 0:
            bounds.append(count >= condition.minimum)
        if condition.at_most is not None:
            bounds.append(count <= condition.at_most)
        return and_(*bounds) if bounds else true()

    def _property(self, column: ColumnElement[Any], condition: PropertyCondition) -> ColumnElement[bool]:
        path = condition.property.split(".")
        op, value = condition.op, condition.value
        if op is Operator.EXISTS:
            present = self.json.present(column, path)
            return present if value else not_(present)

        if op is Operator.NEQ:
            return not_(self._property_equals(column, path, value))

        if op is Operator.IN:
            return or_(*(self._property_equals(column, path, item) for item in value))

        if op in (Operator.CONTAINS, Operator.STARTS_WITH):
            return _sure(self._text(self.json.text(column, path), op, value))

        if op is Operator.EQ:
            return self._property_equals(column, path, value)

        number = self.json.number(column, path)
        if op is Operator.BETWEEN:
            return _sure(number.between(value[0], value[1]))
        return self._ordered(number, op, value)

    def _property_equals(self, column: ColumnElement[Any], path: Sequence[str], value: Any) -> ColumnElement[bool]:
        # The JSON type of the filter value picks the comparison: text ignores case, numbers and
        # booleans compare as such, and a property of another type never matches.
        if isinstance(value, bool):
            return _sure(self.json.boolean(column, path) == value)
        if isinstance(value, int | float):
            return _sure(self.json.number(column, path) == value)
        return _sure(self._text(self.json.text(column, path), Operator.EQ, value))


def _sure(condition: ColumnElement[Any]) -> ColumnElement[bool]:
    """Turn SQL NULL (unknown, from a missing value) into false."""
    return func.coalesce(condition, false(), type_=Boolean)


def _email_value(path: str, value: Any) -> Any:
    # Emails are matched by their key: the whole address in NFC form, lower-cased.
    if path != "email":
        return value
    if isinstance(value, list):
        return [unicodedata.normalize("NFC", str(item)) for item in value]
    return unicodedata.normalize("NFC", value) if isinstance(value, str) else value


def _bind_value(kind: str, value: Any) -> Any:
    if kind == _DATETIME:
        if isinstance(value, list):
            return [dt.datetime.fromisoformat(item) for item in value]
        return dt.datetime.fromisoformat(value)
    if kind == _NUMBER:
        # SQLAlchemy binds an int with the type of the column it is compared with, and company.size
        # is an INTEGER column, which asyncpg cannot bind above 2**31 - 1. Filter values are at most
        # 1e15 in magnitude, so every integer among them is exact as a float.
        if isinstance(value, list):
            return [float(item) for item in value]
        return float(value)
    return value
