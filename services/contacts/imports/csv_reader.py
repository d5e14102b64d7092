"""Stream the rows of a contacts CSV file and validate each one on its own.

The reader takes a binary file object and reads it one physical line at a time, so memory stays flat
however many rows the file has. The one structure that grows is the set of emails seen so far, which
finds duplicates: about one short string per distinct contact.

Line numbers count physical lines from 1, the header being line 1. A row whose quoted cell spans
several lines is reported at the line where it starts, as a text editor shows it.

What the reader accepts and how it reports problems:

- UTF-8 with or without a byte order mark. A UTF-16 file, a header that is not UTF-8, an empty
  file and a bad mapping are job-level errors (ImportFileError) raised before any row is read.
- Invalid UTF-8 bytes, a line longer than `max_line_bytes`, malformed quoting, a wrong number of
  columns and any invalid value reject that row only (RejectedRow), and reading goes on.
- Lines end with LF or CRLF; the last line may lack one.
- Cells are kept as text: a cell such as `=SUM(A1:A2)` is stored as those characters and never
  evaluated. Surrounding whitespace is trimmed and a blank cell means "no value" (it never clears
  a stored value).
- A row whose email matches an earlier accepted row (ignoring case) is a DuplicateRow: the importer
  merges it into the contact of that earlier row and counts it as a duplicate.
- Rows where every cell is blank are skipped and counted in `blank_lines`.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import BinaryIO

from services.contacts.attributes.types import AttributeDefinition, StoredValue, parse_text_value
from services.contacts.imports.mapping import ColumnTarget, ImportFileError, TargetKind, resolve_mapping
from services.contacts.people.email import NormalisedEmail, normalise_email
from services.contacts.people.errors import FieldValueError
from services.contacts.people.profile import (
    normalise_domain,
    validate_company_size,
    validate_contact_timezone,
    validate_text,
)
from services.contacts.stages.machine import Stage, StageError, parse_stage

DEFAULT_MAX_LINE_BYTES = 64 * 1024
# A quoted cell may span lines; this bounds one row in total.
DEFAULT_MAX_ROW_BYTES = 1024 * 1024
CONSENT_HINT_VALUES = ("subscribed", "unsubscribed")

_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")
_WHOLE_NUMBER = re.compile(r"\d{1,9}")


@dataclass(frozen=True, slots=True)
class ParsedRow:
    """A valid row: the values of its non-blank mapped cells.

    `consent_hints` maps a topic (None for overall consent) to the status the file requests. They
    are hints because an import never changes the consent of an existing contact; the importer
    counts them as ignored for existing contacts and duplicates.
    """

    line: int
    email: NormalisedEmail
    fields: dict[str, str] = field(default_factory=dict)
    company: dict[str, str | int] = field(default_factory=dict)
    attributes: dict[str, StoredValue] = field(default_factory=dict)
    stage: Stage | None = None
    consent_hints: dict[str | None, str] = field(default_factory=dict)

    def merged_with(self, later: ParsedRow) -> ParsedRow:
        """Return this row with the values of a later duplicate laid over it.

        The email, line and consent hints stay those of this row, because a duplicate never
        changes consent.
        """
        return replace(
            self,
            fields={**self.fields, **later.fields},
            company={**self.company, **later.company},
            attributes={**self.attributes, **later.attributes},
            stage=later.stage if later.stage is not None else self.stage,
        )


@dataclass(frozen=True, slots=True)
class DuplicateRow:
    """A valid row whose email matches the accepted row at `first_line`."""

    line: int
    first_line: int
    row: ParsedRow


@dataclass(frozen=True, slots=True)
class RowProblem:
    """One reason a row was rejected; `field` is None for problems of the whole row."""

    reason: str
    detail: str
    field: str | None = None


@dataclass(frozen=True, slots=True)
class RejectedRow:
    """A row that was not imported, with every problem found in it (at least one)."""

    line: int
    problems: tuple[RowProblem, ...]

    @property
    def reason(self) -> str:
        return self.problems[0].reason

    @property
    def detail(self) -> str:
        return self.problems[0].detail


RowResult = ParsedRow | DuplicateRow | RejectedRow


class _LineTooLong(Exception):
    def __init__(self, length: int) -> None:
        self.length = length


class _RowTooLarge(Exception):
    pass


class _LineSource:
    """Physical lines of the file as text, for csv.reader, with line numbers and size limits.

    Invalid UTF-8 bytes are decoded as lone surrogates (the surrogateescape handler), so the row that
    contains them can be rejected after parsing without losing the rest of the file.
    """

    def __init__(self, file: BinaryIO, max_line_bytes: int, max_row_bytes: int) -> None:
        self._file = file
        self.max_line_bytes = max_line_bytes
        self.max_row_bytes = max_row_bytes
        self._row_bytes = 0
        self.lines_read = 0

    def __iter__(self) -> _LineSource:
        return self

    def __next__(self) -> str:
        raw = self._file.readline(self.max_line_bytes + 1)
        if not raw:
            raise StopIteration

        self.lines_read += 1
        if self.lines_read == 1:
            raw = _check_first_line(raw)

        if len(raw) > self.max_line_bytes:
            raise _LineTooLong(len(raw) + self._skip_rest_of_line())

        self._row_bytes += len(raw)
        if self._row_bytes > self.max_row_bytes:
            raise _RowTooLarge

        return raw.decode("utf-8", errors="surrogateescape")

    def start_row(self) -> None:
        self._row_bytes = 0

    def _skip_rest_of_line(self) -> int:
        skipped = 0
        while True:
            chunk = self._file.readline(self.max_line_bytes)
            skipped += len(chunk)
            if not chunk or chunk.endswith(b"\n"):
                return skipped


class ContactCsvReader:
    """Read a contacts CSV file row by row; iterate over it for one RowResult per non-blank row.

    The constructor reads the header line and checks the mapping against it, raising ImportFileError
    for a problem that stops the whole import. Iteration can be done once.
    """

    def __init__(
        self,
        file: BinaryIO,
        mapping: Mapping[str, str],
        definitions: Mapping[str, AttributeDefinition] | None = None,
        *,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        max_row_bytes: int = DEFAULT_MAX_ROW_BYTES,
        delimiter: str = ",",
    ) -> None:
        if delimiter not in (",", ";", "\t", "|"):
            detail = f"the delimiter {delimiter!r} is not supported; use ',', ';', tab or '|'"
            raise ImportFileError(detail, field="delimiter")

        self._source = _LineSource(file, max_line_bytes, max(max_row_bytes, max_line_bytes))
        self._csv = csv.reader(self._source, delimiter=delimiter, strict=True)
        self._definitions = definitions or {}
        self._first_line_by_email: dict[str, int] = {}

        self.header = self._read_header()
        self.targets = resolve_mapping(mapping, self.header, self._definitions)
        self.ignored_columns = tuple(column for column in self.header if column not in mapping)
        self.blank_lines = 0

    def __iter__(self) -> Iterator[RowResult]:
        while True:
            line = self._source.lines_read + 1
            cells = self._next_cells(line)
            if cells is None:
                return

            if isinstance(cells, RejectedRow):
                yield cells
            elif all(not cell.strip() for cell in cells):
                self.blank_lines += 1
            else:
                yield self._check_duplicate(self._parse_row(line, cells))

    def _next_cells(self, line: int) -> list[str] | RejectedRow | None:
        self._source.start_row()

        try:
            return next(self._csv)
        except StopIteration:
            return None
        except _LineTooLong as error:
            # NOTE: when the long line sits inside a quoted cell that spans lines, the lines after it
            # are read as new rows. They are still reported (usually rejected), never dropped.
            detail = f"the line has {error.length} bytes, more than the limit of {self._source.max_line_bytes}"
            return _whole_row_problem(line, "line too long", detail)
        except _RowTooLarge:
            limit = self._source.max_row_bytes
            detail = f"the row spans more than {limit} bytes; look for a quote that is never closed"
            return _whole_row_problem(line, "row too long", detail)
        except csv.Error as error:
            return _whole_row_problem(line, "malformed CSV", f"the row could not be parsed: {error}")

    def _read_header(self) -> tuple[str, ...]:
        try:
            cells = next(self._csv)
        except StopIteration:
            raise ImportFileError("the file is empty; the first line must be a header naming the columns") from None
        except _LineTooLong as error:
            limit = self._source.max_line_bytes
            raise ImportFileError(f"the header line has {error.length} bytes, more than the limit of {limit}") from None
        except (_RowTooLarge, csv.Error) as error:
            raise ImportFileError(f"the header line could not be parsed: {error}") from None

        header = tuple(cell.strip() for cell in cells)
        if not any(header):
            raise ImportFileError("the first line is blank; it must be a header naming the columns")

        if any(_ESCAPED_BYTE.search(cell) for cell in header):
            raise ImportFileError("the header line is not valid UTF-8; save the file as CSV UTF-8")

        return header

    def _parse_row(self, line: int, cells: list[str]) -> ParsedRow | RejectedRow:
        problem = self._row_shape_problem(cells)
        if problem is not None:
            return RejectedRow(line, (problem,))

        values: dict[ColumnTarget, object] = {}
        problems: list[RowProblem] = []
        for target in self.targets:
            try:
                values[target] = self._parse_cell(target, cells[target.index].strip())
            except FieldValueError as error:
                problems.append(RowProblem(error.summary, error.detail, error.field))

        if problems:
            return RejectedRow(line, tuple(problems))

        return _build_row(line, values)

    def _row_shape_problem(self, cells: list[str]) -> RowProblem | None:
        for index, cell in enumerate(cells):
            escaped = _ESCAPED_BYTE.search(cell)
            if escaped is not None:
                column = self.header[index] if index < len(self.header) else f"#{index + 1}"
                byte = ord(escaped.group()) - 0xDC00
                detail = f"the cell in column {column!r} has the byte 0x{byte:02x}, which is not UTF-8; save as UTF-8"
                return RowProblem("invalid UTF-8", detail)

        if len(cells) < len(self.header):
            detail = f"the row has {len(cells)} columns, the header has {len(self.header)}"
            return RowProblem("wrong number of columns", detail)

        # Spreadsheets often write empty cells past the last column, which carry no data.
        if any(cell.strip() for cell in cells[len(self.header) :]):
            detail = f"the row has values in {len(cells)} columns, the header has {len(self.header)}"
            return RowProblem("wrong number of columns", detail)

        return None

    def _parse_cell(self, target: ColumnTarget, text: str) -> object:
        if target.kind is TargetKind.ATTRIBUTE:
            return parse_text_value(self._definitions[target.name], text)

        if target.kind is TargetKind.CONSENT:
            return _parse_consent_hint(target, text)

        if target.kind is TargetKind.COMPANY:
            return _parse_company_cell(target, text)

        return _parse_contact_cell(target, text)

    def _check_duplicate(self, row: ParsedRow | RejectedRow) -> RowResult:
        if isinstance(row, RejectedRow):
            return row

        first_line = self._first_line_by_email.setdefault(row.email.match_key, row.line)
        if first_line != row.line:
            return DuplicateRow(row.line, first_line, row)

        return row


def _parse_contact_cell(target: ColumnTarget, text: str) -> object:
    if target.name == "email":
        if not text:
            raise FieldValueError("email", "missing email", "the email cell is empty; every row needs one")

        return normalise_email(text)

    if target.name == "timezone":
        return validate_contact_timezone(text)

    if target.name == "stage":
        return _parse_stage_cell(text)

    return validate_text(text, field=target.name)


def _parse_stage_cell(text: str) -> Stage | None:
    if not text:
        return None

    try:
        return parse_stage(text)
    except StageError as error:
        raise FieldValueError("stage", "invalid stage", error.detail, value=text) from error


def _parse_company_cell(target: ColumnTarget, text: str) -> object:
    if target.name == "domain":
        return normalise_domain(text)

    if target.name != "size":
        return validate_text(text, field=target.field)

    if not text:
        return None

    if not _WHOLE_NUMBER.fullmatch(text):
        detail = f"{text!r} is not a whole number of employees"
        raise FieldValueError(target.field, f"invalid {target.field}", detail, value=text)

    return validate_company_size(int(text))


def _parse_consent_hint(target: ColumnTarget, text: str) -> str | None:
    if not text:
        return None

    status = text.lower()
    if status not in CONSENT_HINT_VALUES:
        detail = f"{text!r} is not a consent status an import can carry; use subscribed or unsubscribed"
        raise FieldValueError(target.field, f"invalid {target.field}", detail, value=text)

    return status


def _build_row(line: int, values: Mapping[ColumnTarget, object]) -> ParsedRow:
    email: NormalisedEmail | None = None
    fields: dict[str, str] = {}
    company: dict[str, str | int] = {}
    attributes: dict[str, StoredValue] = {}
    consent_hints: dict[str | None, str] = {}
    stage: Stage | None = None

    for target, value in values.items():
        if isinstance(value, NormalisedEmail):
            email = value
        elif isinstance(value, Stage):
            stage = value
        elif value is None:
            continue
        elif target.kind is TargetKind.ATTRIBUTE:
            attributes[target.name] = value  # type: ignore[assignment]
        elif target.kind is TargetKind.COMPANY:
            company[target.name] = value  # type: ignore[assignment]
        elif target.kind is TargetKind.CONSENT:
            consent_hints[target.topic] = str(value)
        else:
            fields[target.name] = str(value)

    if email is None:
        raise AssertionError("resolve_mapping guarantees an email column and a parsed row has its value")

    return ParsedRow(line, email, fields, company, attributes, stage, consent_hints)


def _whole_row_problem(line: int, reason: str, detail: str) -> RejectedRow:
    return RejectedRow(line, (RowProblem(reason, detail),))


def _check_first_line(raw: bytes) -> bytes:
    if raw[:2] in _UTF16_BOMS:
        raise ImportFileError("the file is UTF-16; export it as CSV UTF-8 (in Excel: 'CSV UTF-8 (comma delimited)')")

    return raw[len(_UTF8_BOM):] if raw.startswith(_UTF8_BOM) else raw
