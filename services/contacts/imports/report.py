"""The report of an import job and the loop that feeds parsed rows to the contact store.

Every data row ends in exactly one of four counters, so `created + updated + failed + duplicates`
equals the number of rows read (blank lines are counted apart). Consent hints are never applied to
a contact that already exists; each one is counted in `consent_changes_ignored` instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from services.contacts.imports.csv_reader import ContactCsvReader, DuplicateRow, ParsedRow, RejectedRow, RowResult


class SaveOutcome(StrEnum):
    CREATED = "created"
    UPDATED = "updated"


class ContactSink(Protocol):
    """The persistence side of an import, written by the service that owns the database."""

    async def save_row(self, row: ParsedRow) -> SaveOutcome:
        """Create the contact or update the existing one by email match key, leaving consent alone
        for an existing contact, and return which of the two happened."""
        ...

    async def merge_duplicate(self, row: DuplicateRow) -> None:
        """Lay the values of `row.row` over the contact saved from `row.first_line`, without consent."""
        ...


@dataclass
class ImportReport:
    """Counters and rejected rows of one import job."""

    created: int = 0
    updated: int = 0
    duplicate_lines: list[int] = field(default_factory=list)
    failed: list[RejectedRow] = field(default_factory=list)
    consent_changes_ignored: int = 0
    blank_lines: int = 0

    @property
    def duplicates(self) -> int:
        return len(self.duplicate_lines)

    @property
    def rows(self) -> int:
        return self.created + self.updated + len(self.failed) + self.duplicates

    def record_saved(self, row: ParsedRow, outcome: SaveOutcome) -> None:
        if outcome is SaveOutcome.CREATED:
            self.created += 1
            return

        self.updated += 1
        self.consent_changes_ignored += len(row.consent_hints)

    def record_duplicate(self, row: DuplicateRow) -> None:
        self.duplicate_lines.append(row.line)
        self.consent_changes_ignored += len(row.row.consent_hints)

    def record_rejected(self, row: RejectedRow) -> None:
        self.failed.append(row)

    def to_dict(self) -> dict[str, Any]:
        """Return the report as the JSON body of `GET /v1/imports/{id}`."""
        return {
            "rows": self.rows,
            "created": self.created,
            "updated": self.updated,
            "duplicates": self.duplicates,
            "duplicate_lines": list(self.duplicate_lines),
            "failed": [_rejection_dict(row) for row in self.failed],
            "consent_changes_ignored": self.consent_changes_ignored,
            "blank_lines": self.blank_lines,
        }


async def import_rows(
    rows: Iterable[RowResult], sink: ContactSink, report: ImportReport | None = None
) -> ImportReport:
    """Save every parsed row through `sink` and return the report with one entry per row.

    Pass a `report` to read its counters while the import runs. A bad row never stops the loop;
    an exception from `sink` does, leaving the report counting the rows done so far.
    """
    report = report if report is not None else ImportReport()

    for row in rows:
        if isinstance(row, RejectedRow):
            report.record_rejected(row)
        elif isinstance(row, DuplicateRow):
            await sink.merge_duplicate(row)
            report.record_duplicate(row)
        else:
            report.record_saved(row, await sink.save_row(row))

    if isinstance(rows, ContactCsvReader):
        report.blank_lines = rows.blank_lines

    return report


def _rejection_dict(row: RejectedRow) -> dict[str, Any]:
    entry: dict[str, Any] = {"line": row.line, "reason": row.reason, "detail": row.detail}
    field_name = row.problems[0].field
    if field_name is not None:
        entry["field"] = field_name

    if len(row.problems) > 1:
        entry["problems"] = [
            {"reason": problem.reason, "detail": problem.detail, "field": problem.field} for problem in row.problems
        ]

    return entry
