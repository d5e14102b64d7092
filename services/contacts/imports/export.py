"""Write contacts to CSV so that no cell runs as a spreadsheet formula.

Excel, LibreOffice and Google Sheets treat a cell that starts with `=`, `+`, `-` or `@` as a formula,
and a leading tab or carriage return can hide such a start (the OWASP "CSV injection" advice lists
these six characters). Such a cell is written with a leading apostrophe, which spreadsheets show as
text. Plain numbers such as `-12.5` are left alone because they cannot call a function.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TextIO

from services.contacts.attributes.types import LIST_SEPARATOR

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?")


def neutralise_cell(text: str) -> str:
    """Return `text` with an apostrophe in front when a spreadsheet would read it as a formula."""
    if text.startswith(FORMULA_PREFIXES) and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text

    return text


def format_cell(value: object) -> str:
    """Return the CSV text of a stored value, neutralised: lists are joined with ';', None is empty."""
    if value is None:
        return ""

    if isinstance(value, bool):
        return "true" if value else "false"

    if isinstance(value, list | tuple):
        return neutralise_cell(LIST_SEPARATOR.join(str(item) for item in value))

    return neutralise_cell(str(value))


def write_csv(out: TextIO, columns: Sequence[str], rows: Iterable[Mapping[str, object]]) -> int:
    """Write a header and one line per row to `out`, neutralising every cell; return the rows written.

    `out` should be opened with `newline=""`, as the csv module documentation requires. Keys of a row that are not in
    `columns` are not written, and a missing key writes an empty cell. Rows are written as they come,
    so a generator of rows keeps memory flat.
    """
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([neutralise_cell(column) for column in columns])

    written = 0
    for row in rows:
        writer.writerow([format_cell(row.get(column)) for column in columns])
        written += 1

    return written
