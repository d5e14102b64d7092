import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.contacts.attributes import AttributeDefinition
from services.contacts.imports import (
    ContactCsvReader,
    DuplicateRow,
    ImportReport,
    ParsedRow,
    SaveOutcome,
    import_rows,
)

FIXTURES = Path(__file__).parent / "fixtures"
BIRTHDAY = AttributeDefinition(name="birthday", type="date", label="Birthday")


@dataclass
class StoredContact:
    email: str
    fields: dict[str, str]
    attributes: dict[str, Any]
    consent: str
    consent_source: str | None = None


@dataclass
class MemoryContactStore:
    """The persistence side of an import, kept in a dict keyed by email match key."""

    contacts: dict[str, StoredContact] = field(default_factory=dict)

    async def save_row(self, row: ParsedRow) -> SaveOutcome:
        existing = self.contacts.get(row.email.match_key)
        if existing is not None:
            existing.fields.update(row.fields)
            existing.attributes.update(row.attributes)
            return SaveOutcome.UPDATED

        consent = row.consent_hints.get(None, "subscribed")
        self.contacts[row.email.match_key] = StoredContact(row.email.address, dict(row.fields), dict(row.attributes), consent)
        return SaveOutcome.CREATED

    async def merge_duplicate(self, row: DuplicateRow) -> None:
        existing = self.contacts[row.row.email.match_key]
        existing.fields.update(row.row.fields)
        existing.attributes.update(row.row.attributes)


async def run(path: Path, mapping: dict[str, str], store: MemoryContactStore) -> ImportReport:
    with path.open("rb") as file:
        reader = ContactCsvReader(file, mapping, {"birthday": BIRTHDAY})
        return await import_rows(reader, store)


class TestCaseFourReport:
    MAPPING = {"email": "email", "first_name": "first_name", "birthday": "birthday"}

    async def test_counts(self) -> None:
        report = await run(FIXTURES / "case04_bad_rows.csv", self.MAPPING, MemoryContactStore())

        assert report.created == 3
        assert report.updated == 0
        assert report.duplicates == 1
        assert report.duplicate_lines == [7]

    async def test_failed_rows_with_reasons(self) -> None:
        report = await run(FIXTURES / "case04_bad_rows.csv", self.MAPPING, MemoryContactStore())

        failed = [{"line": row.line, "reason": row.reason} for row in report.failed]

        assert failed == [{"line": 3, "reason": "invalid email"}, {"line": 5, "reason": "invalid date: birthday"}]

    async def test_counts_reconcile_with_six_rows(self) -> None:
        report = await run(FIXTURES / "case04_bad_rows.csv", self.MAPPING, MemoryContactStore())

        assert report.created + report.updated + len(report.failed) + report.duplicates == 6
        assert report.rows == 6

    async def test_last_row_stored_and_merged(self) -> None:
        store = MemoryContactStore()

        await run(FIXTURES / "case04_bad_rows.csv", self.MAPPING, store)

        assert sorted(store.contacts) == ["r1@example.com", "r3@example.com", "r5@example.com"]
        assert store.contacts["r5@example.com"].fields == {"first_name": "Rae2"}

    async def test_report_json(self) -> None:
        report = await run(FIXTURES / "case04_bad_rows.csv", self.MAPPING, MemoryContactStore())

        body = report.to_dict()

        assert body["rows"] == 6
        assert body["failed"][0] == {
            "line": 3,
            "reason": "invalid email",
            "detail": "'not-an-email' is not a valid address: An email address must have an @-sign.",
            "field": "email",
        }
        assert body["failed"][1]["field"] == "attributes.birthday"
        assert body["duplicate_lines"] == [7]


class TestCaseSixConsent:
    """A re-import that requests "subscribed" for a contact who unsubscribed by link."""

    MAPPING = {"email": "email", "first_name": "first_name", "status": "consent"}

    def store_with_unsubscribed_contact(self) -> MemoryContactStore:
        store = MemoryContactStore()
        store.contacts["u@example.com"] = StoredContact("u@example.com", {}, {}, "unsubscribed", "link")
        return store

    async def test_profile_updated_consent_kept(self) -> None:
        store = self.store_with_unsubscribed_contact()

        report = await run(FIXTURES / "case06_reimport.csv", self.MAPPING, store)

        contact = store.contacts["u@example.com"]
        assert contact.fields == {"first_name": "Una"}
        assert contact.consent == "unsubscribed"
        assert contact.consent_source == "link"
        assert report.updated == 1

    async def test_ignored_consent_change_counted(self) -> None:
        report = await run(FIXTURES / "case06_reimport.csv", self.MAPPING, self.store_with_unsubscribed_contact())

        assert report.consent_changes_ignored == 1
        assert report.to_dict()["consent_changes_ignored"] == 1

    async def test_new_contact_hint_not_counted_as_ignored(self) -> None:
        report = await run(FIXTURES / "case06_reimport.csv", self.MAPPING, MemoryContactStore())

        assert report.created == 1
        assert report.consent_changes_ignored == 0

    async def test_duplicate_consent_hint_counted(self) -> None:
        data = b"email,status\nv@example.com,subscribed\nV@example.com,unsubscribed\n"
        reader = ContactCsvReader(io.BytesIO(data), {"email": "email", "status": "consent"})

        report = await import_rows(reader, MemoryContactStore())

        assert report.consent_changes_ignored == 1


class TestImportRows:
    async def test_blank_lines_copied_from_reader(self) -> None:
        reader = ContactCsvReader(io.BytesIO(b"email\na@example.com\n\n\n"), {"email": "email"})

        report = await import_rows(reader, MemoryContactStore())

        assert report.blank_lines == 2
        assert report.created == 1

    async def test_existing_report_updated_in_place(self) -> None:
        report = ImportReport()
        reader = ContactCsvReader(io.BytesIO(b"email\na@example.com\nnope\n"), {"email": "email"})

        returned = await import_rows(reader, MemoryContactStore(), report)

        assert returned is report
        assert (report.created, len(report.failed)) == (1, 1)

    async def test_several_problems_listed(self) -> None:
        data = io.BytesIO(b"email,birthday\nnope,1990-02-30\n")
        reader = ContactCsvReader(data, {"email": "email", "birthday": "birthday"}, {"birthday": BIRTHDAY})

        report = await import_rows(reader, MemoryContactStore())

        entry = report.to_dict()["failed"][0]
        assert [problem["reason"] for problem in entry["problems"]] == ["invalid email", "invalid date: birthday"]
