"""The column mapping of a CSV import: which CSV column fills which contact field or attribute.

A mapping is `{csv column: target}`. A target is one of:

- `email` (required), `first_name`, `last_name`, `timezone`, `stage`;
- `company.domain`, `company.name`, `company.size`, `company.industry`;
- `consent` or `consent.<topic>`: read as a consent hint only (see ParsedRow.consent_hints);
- `attributes.<name>`, or the bare `<name>` of a defined custom attribute.

Columns absent from the mapping are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from services.contacts.attributes.types import AttributeDefinition

CONTACT_TARGETS = ("email", "first_name", "last_name", "timezone", "stage")
COMPANY_TARGETS = ("company.domain", "company.name", "company.size", "company.industry")
_TOPIC = re.compile(r"[a-z0-9][a-z0-9_\-]{0,62}")


class TargetKind(StrEnum):
    CONTACT = "contact"
    COMPANY = "company"
    CONSENT = "consent"
    ATTRIBUTE = "attribute"


@dataclass(frozen=True, slots=True)
class ColumnTarget:
    """The destination of one CSV column: `name` is the contact field, company field or attribute."""

    column: str
    index: int
    kind: TargetKind
    name: str
    # The consent topic; None is the contact's overall consent.
    topic: str | None = None

    @property
    def field(self) -> str:
        if self.kind is TargetKind.COMPANY:
            return f"company.{self.name}"

        if self.kind is TargetKind.ATTRIBUTE:
            return f"attributes.{self.name}"

        if self.kind is TargetKind.CONSENT:
            return "consent" if self.topic is None else f"consent.{self.topic}"

        return self.name


class ImportFileError(ValueError):
    """A problem with the whole file or mapping, so no row is read (the import job fails at once).

    `field` names the request part at fault, such as `mapping.Birthday` or `file`.
    """

    def __init__(self, message: str, *, field: str = "file") -> None:
        self.field = field
        self.detail = message
        super().__init__(message)


def resolve_mapping(
    mapping: Mapping[str, str],
    header: Sequence[str],
    definitions: Mapping[str, AttributeDefinition],
) -> tuple[ColumnTarget, ...]:
    """Return the target of every mapped column, or raise ImportFileError naming the bad mapping entry.

    Raises when a target is unknown, two columns share a target, no column maps to `email`, a mapped
    column is missing from the header, or a mapped column name appears twice in the header.
    """
    if not mapping:
        raise ImportFileError("the column mapping is empty; map at least one column to email", field="mapping")

    positions = _header_positions(header, mapping)
    targets = tuple(_resolve(column, target, positions[column], definitions) for column, target in mapping.items())
    _check_unique_targets(targets)

    if not any(target.kind is TargetKind.CONTACT and target.name == "email" for target in targets):
        raise ImportFileError(
            "no column maps to email; every row needs an email to find or create its contact",
            field="mapping",
        )

    return targets


def _header_positions(header: Sequence[str], mapping: Mapping[str, str]) -> dict[str, int]:
    missing = [column for column in mapping if column not in header]
    if missing:
        found = ", ".join(repr(column) for column in header)
        names = ", ".join(repr(column) for column in missing)
        raise ImportFileError(
            f"the mapped column {names} is not in the header line; the header has {found}",
            field=f"mapping.{missing[0]}",
        )

    for column in mapping:
        if header.count(column) > 1:
            raise ImportFileError(
                f"the column {column!r} appears {header.count(column)} times in the header; rename the copies",
                field=f"mapping.{column}",
            )

    return {column: header.index(column) for column in mapping}


def _resolve(column: str, target: str, index: int, definitions: Mapping[str, AttributeDefinition]) -> ColumnTarget:
    name = target.strip() if isinstance(target, str) else ""

    if name in CONTACT_TARGETS:
        return ColumnTarget(column, index, TargetKind.CONTACT, name)

    if name in COMPANY_TARGETS:
        return ColumnTarget(column, index, TargetKind.COMPANY, name.removeprefix("company."))

    if name == "consent" or name.startswith("consent."):
        return _consent_target(column, index, name)

    attribute = name.removeprefix("attributes.")
    if attribute in definitions:
        return ColumnTarget(column, index, TargetKind.ATTRIBUTE, attribute)

    raise ImportFileError(
        f"the column {column!r} maps to {target!r}, which is neither a contact field "
        f"({', '.join(CONTACT_TARGETS + COMPANY_TARGETS)}, consent) nor a defined attribute",
        field=f"mapping.{column}",
    )


def _consent_target(column: str, index: int, name: str) -> ColumnTarget:
    if name == "consent":
        return ColumnTarget(column, index, TargetKind.CONSENT, "consent")

    topic = name.removeprefix("consent.")
    if not _TOPIC.fullmatch(topic):
        raise ImportFileError(
            f"the column {column!r} maps to {name!r}, but {topic!r} is not a valid consent topic "
            "(lower-case letters, digits, '_' and '-')",
            field=f"mapping.{column}",
        )

    return ColumnTarget(column, index, TargetKind.CONSENT, "consent", topic)


def _check_unique_targets(targets: Sequence[ColumnTarget]) -> None:
    seen: dict[str, str] = {}
    for target in targets:
        earlier = seen.get(target.field)
        if earlier is not None:
            raise ImportFileError(
                f"the columns {earlier!r} and {target.column!r} both map to {target.field}; map only one",
                field=f"mapping.{target.column}",
            )

        seen[target.field] = target.column
