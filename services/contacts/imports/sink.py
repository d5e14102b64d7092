"""Saving parsed CSV rows to the database, chunk by chunk, under the same rules as the API.

Stage cells go through the one stage check, so an import never moves a contact backwards. Consent
cells only set the consent of a contact the import creates. A row that these rules reject is
reported with its line number instead of being dropped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from services.contacts.attributes.types import AttributeDefinition
from services.contacts.changes import ContactChanges
from services.contacts.consent.service import SOURCE_IMPORT_INITIAL, set_initial_consent
from services.contacts.imports.csv_reader import DuplicateRow, ParsedRow, RejectedRow, RowProblem, RowResult
from services.contacts.imports.report import ImportReport, SaveOutcome
from services.contacts.people.models import Contact
from services.contacts.people.service import INITIAL_STAGE, apply_profile, create_contact, find_by_keys
from services.contacts.stages.machine import StageError, StageUnchanged, check_transition
from services.contacts.stages.service import change_stage
from services.kit.outbox import Outbox

MODES = ("upsert", "overwrite", "create_only")


class RowRejected(Exception):
    def __init__(self, line: int, reason: str, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.rejection = RejectedRow(line, (RowProblem(reason, detail, field),))


class DatabaseSink:
    """Writer of one chunk of rows: creates and updates their contacts in one session."""

    def __init__(
        self,
        session: AsyncSession,
        outbox: Outbox,
        changes: ContactChanges,
        definitions: Mapping[str, AttributeDefinition],
        *,
        import_id: str,
        mode: str,
    ) -> None:
        self.session = session
        self.outbox = outbox
        self.changes = changes
        self.definitions = definitions
        self.actor = f"import:{import_id}"
        self.mode = mode
        self.contacts: dict[str, Contact] = {}

    async def prefetch(self, rows: Sequence[RowResult]) -> None:
        """Load the existing contacts of a chunk's rows in one query."""
        keys = {_parsed(row).email.match_key for row in rows if not isinstance(row, RejectedRow)}
        self.contacts.update(await find_by_keys(self.session, keys))

    async def save_rows(self, rows: Sequence[RowResult], report: ImportReport) -> None:
        """Save every row of a chunk and count each row under one counter of `report`."""
        await self.prefetch(rows)
        for row in rows:
            if isinstance(row, RejectedRow):
                report.record_rejected(row)
                continue
            try:
                if isinstance(row, DuplicateRow):
                    await self.merge_duplicate(row)
                    report.record_duplicate(row)
                else:
                    report.record_saved(row, await self.save_row(row))
            except RowRejected as rejected:
                report.record_rejected(rejected.rejection)

    async def save_row(self, row: ParsedRow) -> SaveOutcome:
        contact = self.contacts.get(row.email.match_key)
        if contact is None:
            await self._create(row)
            return SaveOutcome.CREATED

        if self.mode == "create_only":
            detail = f"a contact with this email exists ({contact.id}) and the import mode is create_only"
            raise RowRejected(row.line, "contact exists", detail, "email")

        await self._update(contact, row)
        return SaveOutcome.UPDATED

    async def merge_duplicate(self, row: DuplicateRow) -> None:
        contact = self.contacts.get(row.row.email.match_key)
        if contact is None:
            detail = f"the row repeats the email of line {row.first_line}, which was not imported"
            raise RowRejected(row.line, "duplicate of a rejected row", detail, "email")

        if self.mode == "create_only":
            return
        await self._update(contact, row.row)

    async def _create(self, row: ParsedRow) -> None:
        stage = row.stage.value if row.stage is not None else INITIAL_STAGE
        # Not flushed one by one: a contact created elsewhere meanwhile fails the chunk's commit on the
        # unique address, and the job's retry then finds that contact and updates it.
        contact = await create_contact(self.session, row.email, self.changes, actor=self.actor, stage=stage, check_now=False)
        self.contacts[contact.email_key] = contact
        await apply_profile(self.session, contact, _profile(row), self.definitions, self.changes)
        if row.consent_hints:
            await set_initial_consent(self.session, contact.id, row.consent_hints, source=SOURCE_IMPORT_INITIAL)

    async def _update(self, contact: Contact, row: ParsedRow) -> None:
        # The stage is checked before anything is written, so a rejected row changes nothing.
        move_stage = row.stage is not None and self._stage_allowed(contact, row)
        await apply_profile(self.session, contact, _profile(row), self.definitions, self.changes)
        if move_stage and row.stage is not None:
            await change_stage(self.session, self.outbox, contact, row.stage, self.changes, reason=None, actor=self.actor)

    def _stage_allowed(self, contact: Contact, row: ParsedRow) -> bool:
        try:
            check_transition(contact.stage, row.stage, reason=None, actor=self.actor)  # type: ignore[arg-type]
        except StageUnchanged:
            return False
        except StageError as error:
            raise RowRejected(row.line, "stage not allowed", error.detail, "stage") from error
        return True


def _parsed(row: RowResult) -> ParsedRow:
    return row.row if isinstance(row, DuplicateRow) else row  # type: ignore[return-value]


def _profile(row: ParsedRow) -> dict[str, Any]:
    profile: dict[str, Any] = dict(row.fields)
    if row.attributes:
        profile["attributes"] = dict(row.attributes)
    if row.company:
        profile["company"] = dict(row.company)
    return profile
