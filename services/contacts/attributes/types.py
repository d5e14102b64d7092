"""Typed custom attributes of a contact: their definitions and the validation of their values.

An attribute is defined once (name, type, label) and every contact may then hold a value for it. A
value is stored as JSON:

| type          | stored JSON                   | from JSON (API)             | from text (CSV import)                |
| ------------- | ----------------------------- | --------------------------- | ------------------------------------- |
| `string`      | string                        | string                      | the cell as typed                     |
| `number`      | integer or float              | number (not a boolean)      | `42`, `-3.5`, `1e3`                   |
| `boolean`     | true or false                 | true or false               | true/false, yes/no, 1/0, any case     |
| `date`        | string `YYYY-MM-DD`           | string `YYYY-MM-DD`         | `YYYY-MM-DD`                          |
| `enum`        | one of `allowed_values`       | string, exact               | string, case-insensitive              |
| `string_list` | array of strings              | array of strings            | items separated by `;`                |

None (JSON null) clears a value. Text is stored exactly as given, in any script; nothing is
normalised, so what is written is what is read back.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum
from typing import Annotated, Self, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from services.contacts.people.errors import FieldValueError

MAX_STRING_LENGTH = 10_000
MAX_LIST_ITEMS = 200
MAX_LIST_ITEM_LENGTH = 500
MAX_ENUM_VALUES = 500
MAX_NUMBER_TEXT_LENGTH = 50
LIST_SEPARATOR = ";"

# Lower-case snake_case names: they appear in filter paths (`attributes.job_title`) and CSV mappings.
ATTRIBUTE_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"

StoredValue: TypeAlias = str | int | float | bool | list[str] | None

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_NUMBER_TEXT = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_TRUE_TEXT = frozenset({"true", "yes", "1"})
_FALSE_TEXT = frozenset({"false", "no", "0"})


class AttributeType(StrEnum):
    STRING = "string"
    NUMBER = "number"
    BOOLEAN = "boolean"
    DATE = "date"
    ENUM = "enum"
    STRING_LIST = "string_list"


class AttributeValueError(FieldValueError):
    """A value that does not fit its attribute's type; `field` is `attributes.<name>`."""


class UndefinedAttributeError(AttributeValueError):
    """A value for an attribute name that has no definition."""


AttributeName = Annotated[str, StringConstraints(pattern=ATTRIBUTE_NAME_PATTERN)]
AllowedValue = Annotated[str, StringConstraints(min_length=1, max_length=MAX_LIST_ITEM_LENGTH)]


class AttributeDefinition(BaseModel):
    """The definition of one custom attribute."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: AttributeName
    type: AttributeType
    label: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    description: Annotated[str, StringConstraints(max_length=2000)] | None = None
    allowed_values: tuple[AllowedValue, ...] | None = Field(default=None, max_length=MAX_ENUM_VALUES)

    @model_validator(mode="after")
    def _check_allowed_values(self) -> Self:
        if self.type is AttributeType.ENUM:
            _check_enum_values(self.allowed_values)
        elif self.allowed_values is not None:
            raise ValueError(f"allowed_values applies only to enum attributes, not to type {self.type.value!r}")

        return self

    @property
    def field(self) -> str:
        return f"attributes.{self.name}"


def coerce_value(definition: AttributeDefinition, value: object) -> StoredValue:
    """Return `value` as it is stored for `definition`, or raise AttributeValueError naming the attribute.

    `value` comes from JSON (or equal Python values: a `datetime.date` is accepted for a date).
    """
    if value is None:
        return None

    coercer = _JSON_COERCERS[definition.type]
    return coercer(definition, value)


def parse_text_value(definition: AttributeDefinition, text: str) -> StoredValue:
    """Return the stored value for a CSV cell, None for a blank cell, or raise AttributeValueError."""
    if not text.strip():
        return None

    parser = _TEXT_PARSERS[definition.type]
    return parser(definition, text)


def coerce_attributes(
    definitions: Mapping[str, AttributeDefinition], values: Mapping[str, object]
) -> dict[str, StoredValue]:
    """Return every value in `values` coerced by its definition.

    Raises UndefinedAttributeError for a name without a definition and AttributeValueError for the
    first value that does not fit, naming that attribute.
    """
    return {name: coerce_value(require_definition(definitions, name), value) for name, value in values.items()}


def require_definition(definitions: Mapping[str, AttributeDefinition], name: str) -> AttributeDefinition:
    """Return the definition of `name` or raise UndefinedAttributeError."""
    definition = definitions.get(name)
    if definition is not None:
        return definition

    detail = f"no attribute named {name!r} is defined; define it first or remove the value"
    raise UndefinedAttributeError(f"attributes.{name}", f"undefined attribute: {name}", detail, value=name)


def _check_enum_values(allowed: Sequence[str] | None) -> None:
    if not allowed:
        raise ValueError("an enum attribute needs a non-empty allowed_values list")

    folded = [value.casefold() for value in allowed]
    if len(set(folded)) != len(folded):
        raise ValueError("allowed_values must be unique, ignoring case, so a CSV value maps to exactly one")


def _error(definition: AttributeDefinition, detail: str, value: object) -> AttributeValueError:
    summary = f"invalid {definition.type.value}: {definition.name}"
    return AttributeValueError(definition.field, summary, detail, value=value)


def _coerce_string(definition: AttributeDefinition, value: object) -> str:
    if not isinstance(value, str):
        raise _error(definition, f"expected a string, got {type(value).__name__}", value)

    return _checked_text(definition, value, MAX_STRING_LENGTH)


def _checked_text(definition: AttributeDefinition, text: str, max_length: int) -> str:
    if len(text) > max_length:
        raise _error(definition, f"the text has {len(text)} characters, more than the maximum of {max_length}", text)

    # PostgreSQL text and jsonb cannot hold U+0000.
    if "\x00" in text:
        raise _error(definition, "the text contains the NUL character U+0000", text)

    return text


def _coerce_number(definition: AttributeDefinition, value: object) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _error(definition, f"expected a number, got {type(value).__name__}", value)

    if isinstance(value, float) and not math.isfinite(value):
        raise _error(definition, f"{value} is not a finite number", value)

    return value


def _parse_number(definition: AttributeDefinition, text: str) -> int | float:
    stripped = text.strip()
    # The length cap also keeps int() below Python's limit on digits in a string conversion.
    if len(stripped) > MAX_NUMBER_TEXT_LENGTH:
        raise _error(definition, f"the number has more than {MAX_NUMBER_TEXT_LENGTH} characters", text)

    if not _NUMBER_TEXT.fullmatch(stripped):
        raise _error(definition, f"{stripped!r} is not a number; write it like 42 or -3.5 without separators", text)

    if re.fullmatch(r"[+-]?\d+", stripped):
        return int(stripped)

    return _coerce_number(definition, float(stripped))


def _coerce_boolean(definition: AttributeDefinition, value: object) -> bool:
    if not isinstance(value, bool):
        raise _error(definition, f"expected true or false, got {type(value).__name__}", value)

    return value


def _parse_boolean(definition: AttributeDefinition, text: str) -> bool:
    folded = text.strip().casefold()
    if folded in _TRUE_TEXT:
        return True

    if folded in _FALSE_TEXT:
        return False

    raise _error(definition, f"{text.strip()!r} is not a boolean; write true/false, yes/no or 1/0", text)


def _coerce_date(definition: AttributeDefinition, value: object) -> str:
    if isinstance(value, dt.datetime):
        raise _error(definition, "expected a date without a time of day", value)

    if isinstance(value, dt.date):
        return value.isoformat()

    if not isinstance(value, str):
        raise _error(definition, f"expected a date string YYYY-MM-DD, got {type(value).__name__}", value)

    return _parse_date(definition, value)


def _parse_date(definition: AttributeDefinition, text: str) -> str:
    stripped = text.strip()
    if not _ISO_DATE.fullmatch(stripped):
        raise _error(definition, f"{stripped!r} is not a date in the form YYYY-MM-DD", text)

    try:
        return dt.date.fromisoformat(stripped).isoformat()
    except ValueError as error:
        raise _error(definition, f"{stripped!r} is not a calendar date: {error}", text) from error


def _coerce_enum(definition: AttributeDefinition, value: object) -> str:
    if not isinstance(value, str):
        raise _error(definition, f"expected one of the allowed values as a string, got {type(value).__name__}", value)

    allowed = definition.allowed_values or ()
    if value in allowed:
        return value

    raise _not_allowed(definition, value)


def _parse_enum(definition: AttributeDefinition, text: str) -> str:
    folded = text.strip().casefold()
    for allowed in definition.allowed_values or ():
        if allowed.casefold() == folded:
            return allowed

    raise _not_allowed(definition, text)


def _not_allowed(definition: AttributeDefinition, value: str) -> AttributeValueError:
    allowed = ", ".join(repr(item) for item in definition.allowed_values or ())
    detail = f"{value!r} is not one of the allowed values: {allowed}"
    return AttributeValueError(definition.field, f"value not allowed: {definition.name}", detail, value=value)


def _coerce_string_list(definition: AttributeDefinition, value: object) -> list[str]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise _error(definition, f"expected an array of strings, got {type(value).__name__}", value)

    if len(value) > MAX_LIST_ITEMS:
        raise _error(definition, f"the list has {len(value)} items, more than the maximum of {MAX_LIST_ITEMS}", value)

    return [_list_item(definition, index, item) for index, item in enumerate(value)]


def _list_item(definition: AttributeDefinition, index: int, item: object) -> str:
    if not isinstance(item, str):
        detail = f"item {index} is {type(item).__name__}, expected a string"
        summary = f"invalid string_list: {definition.name}"
        raise AttributeValueError(f"{definition.field}[{index}]", summary, detail, value=item)

    return _checked_text(definition, item, MAX_LIST_ITEM_LENGTH)


def _parse_string_list(definition: AttributeDefinition, text: str) -> list[str]:
    items = [item.strip() for item in text.split(LIST_SEPARATOR)]
    return _coerce_string_list(definition, [item for item in items if item])


_Coercer: TypeAlias = Callable[[AttributeDefinition, object], StoredValue]
_TextParser: TypeAlias = Callable[[AttributeDefinition, str], StoredValue]

_JSON_COERCERS: dict[AttributeType, _Coercer] = {
    AttributeType.STRING: _coerce_string,
    AttributeType.NUMBER: _coerce_number,
    AttributeType.BOOLEAN: _coerce_boolean,
    AttributeType.DATE: _coerce_date,
    AttributeType.ENUM: _coerce_enum,
    AttributeType.STRING_LIST: _coerce_string_list,
}

_TEXT_PARSERS: dict[AttributeType, _TextParser] = {
    AttributeType.STRING: _coerce_string,
    AttributeType.NUMBER: _parse_number,
    AttributeType.BOOLEAN: _parse_boolean,
    AttributeType.DATE: _parse_date,
    AttributeType.ENUM: _parse_enum,
    AttributeType.STRING_LIST: _parse_string_list,
}
