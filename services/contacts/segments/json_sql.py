"""Reading typed values out of JSON columns in SQL, on PostgreSQL and SQLite alike.

The two databases spell JSON access differently: PostgreSQL has `#>`/`#>>` with a text-array path
and `json_typeof`, SQLite has `json_extract`/`json_type` with a `$."a"."b"` path string. Each
accessor below returns NULL unless the value has the expected JSON type, so a filter comparing a
number never fails on a property that happens to hold text (PostgreSQL would raise on the cast).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy import JSON, Boolean, Float, String, Text, bindparam, case, cast, exists, func, literal, select, type_coerce
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql.elements import ColumnElement

from services.contacts.db import SQLITE_LOWER_FUNCTION

Path = Sequence[str]


class JsonSql(Protocol):
    def lower(self, expression: ColumnElement[Any]) -> ColumnElement[Any]: ...

    def present(self, column: ColumnElement[Any], path: Path) -> ColumnElement[bool]: ...

    def text(self, column: ColumnElement[Any], path: Path) -> ColumnElement[Any]: ...

    def number(self, column: ColumnElement[Any], path: Path) -> ColumnElement[Any]: ...

    def boolean(self, column: ColumnElement[Any], path: Path) -> ColumnElement[Any]: ...

    def array_length(self, column: ColumnElement[Any], path: Path) -> ColumnElement[Any]: ...

    def array_has_any(self, column: ColumnElement[Any], path: Path, lowered: Sequence[str]) -> ColumnElement[bool]: ...


class PostgresJson:
    """JSON access for PostgreSQL `json` columns."""

    def lower(self, expression: ColumnElement[Any]) -> ColumnElement[Any]:
        return func.lower(expression)

    def _path(self, path: Path) -> Any:
        return bindparam(None, list(path), type_=ARRAY(Text))

    def _value(self, column: ColumnElement[Any], path: Path) -> ColumnElement[Any]:
        return type_coerce(column.op("#>")(self._path(path)), JSON)

    def _text(self, column: ColumnElement[Any], path: Path) -> ColumnElement[Any]:
        return column.op("#>>")(self._path(path))

    def _type(self, column: ColumnElement[Any], path: Path) -> ColumnElement[Any]:
        return func.json_typeof(self._value(column, path))

    def present(self, column: ColumnElement[Any], path: Path) -> ColumnElement[bool]:
        return func.coalesce(self._type(column, path), "null") != "null"

    def text(self, column: ColumnElement[Any], path: Path) -> ColumnElement[Any]:
        return case((self._type(column, path) == "string", self._text(column, path)))

    def number(self, column: ColumnElement[Any], path: Path) -> ColumnElement[Any]:
        return case((self._type(column, path) == "number", cast(self._text(column, path), Float)))

    def boolean(self, column: ColumnElement[Any], path: Path) -> ColumnElement[Any]:
        return case((self._type(column, path) == "boolean", cast(self._text(column, path), Boolean)))

    def _array(self, column: ColumnElement[Any], path: Path) -> ColumnElement[Any]:
        empty = cast(literal("[]", String), JSON)
        return case((self._type(column, path) == "array", self._value(column, path)), else_=empty)

    def array_length(self, column: ColumnElement[Any], path: Path) -> ColumnElement[Any]:
        return func.json_array_length(self._array(column, path))

    def array_has_any(self, column: ColumnElement[Any], path: Path, lowered: Sequence[str]) -> ColumnElement[bool]:
        elements = func.json_array_elements_text(self._array(column, path)).table_valued("value").alias("elements")
        return exists(select(literal(1)).select_from(elements).where(func.lower(elements.c.value).in_(list(lowered))))


class SqliteJson:
    """JSON access for SQLite, whose JSON columns are text read with the JSON1 functions."""

    def lower(self, expression: ColumnElement[Any]) -> ColumnElement[Any]:
        return getattr(func, SQLITE_LOWER_FUNCTION)(expression)

    def _path(self, path: Path) -> Any:
        # Parts are validated names (letters, digits, '_' and '-'), and quoting them keeps '-' literal.
        return literal("$" + "".join(f'."{part}"' for part in path), String)

    def _type(self, column: ColumnElement[Any], path: Path) -> ColumnElement[Any]:
        return func.json_type(column, self._path(path))

    def _extract(self, column: ColumnElement[Any], path: Path) -> ColumnElement[Any]:
        return func.json_extract(column, self._path(path))

    def present(self, column: ColumnElement[Any], path: Path) -> ColumnElement[bool]:
        return func.coalesce(self._type(column, path), "null") != "null"

    def text(self, column: ColumnElement[Any], path: Path) -> ColumnElement[Any]:
        return case((self._type(column, path) == "text", self._extract(column, path)))

    def number(self, column: ColumnElement[Any], path: Path) -> ColumnElement[Any]:
        return case((self._type(column, path).in_(["integer", "real"]), cast(self._extract(column, path), Float)))

    def boolean(self, column: ColumnElement[Any], path: Path) -> ColumnElement[Any]:
        kind = self._type(column, path)
        return case((kind == "true", literal(True)), (kind == "false", literal(False)))

    def array_length(self, column: ColumnElement[Any], path: Path) -> ColumnElement[Any]:
        return case((self._type(column, path) == "array", func.json_array_length(column, self._path(path))), else_=0)

    def array_has_any(self, column: ColumnElement[Any], path: Path, lowered: Sequence[str]) -> ColumnElement[bool]:
        elements = func.json_each(column, self._path(path)).table_valued("value", "type").alias("elements")
        query = select(literal(1)).select_from(elements).where(
            self._type(column, path) == "array",
            elements.c.type == "text",
            self.lower(elements.c.value).in_(list(lowered)),
        )
        return exists(query)


def json_sql(dialect: str) -> JsonSql:
    """Return the JSON accessors for a SQLAlchemy dialect name (`postgresql` or `sqlite`)."""
    if dialect == "postgresql":
        return PostgresJson()

    if dialect == "sqlite":
        return SqliteJson()

    raise ValueError(f"segment filters support PostgreSQL and SQLite, not {dialect}")
