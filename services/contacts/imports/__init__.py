"""CSV import and export of contacts: streaming row validation, the job report and safe export."""

from services.contacts.imports.csv_reader import (
    CONSENT_HINT_VALUES,
    DEFAULT_MAX_LINE_BYTES,
    DEFAULT_MAX_ROW_BYTES,
    ContactCsvReader,
    DuplicateRow,
    ParsedRow,
    RejectedRow,
    RowProblem,
    RowResult,
)
from services.contacts.imports.export import FORMULA_PREFIXES, format_cell, neutralise_cell, write_csv
from services.contacts.imports.mapping import (
    COMPANY_TARGETS,
    CONTACT_TARGETS,
    ColumnTarget,
    ImportFileError,
    TargetKind,
    resolve_mapping,
)
from services.contacts.imports.report import ContactSink, ImportReport, SaveOutcome, import_rows

__all__ = [
    "COMPANY_TARGETS",
    "CONSENT_HINT_VALUES",
    "CONTACT_TARGETS",
    "ColumnTarget",
    "ContactCsvReader",
    "ContactSink",
    "DEFAULT_MAX_LINE_BYTES",
    "DEFAULT_MAX_ROW_BYTES",
    "DuplicateRow",
    "FORMULA_PREFIXES",
    "ImportFileError",
    "ImportReport",
    "ParsedRow",
    "RejectedRow",
    "RowProblem",
    "RowResult",
    "SaveOutcome",
    "TargetKind",
    "format_cell",
    "import_rows",
    "neutralise_cell",
    "resolve_mapping",
    "write_csv",
]
