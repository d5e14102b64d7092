"""What one transaction changed about contacts, published and re-segmented together before the commit.

Every write path (API routes, event ingest, imports, consumers) records here which contacts changed
and how. `flush` then publishes one `contact.changed` per changed contact with its full snapshot and
re-evaluates only the segments those changes can affect, so a batch of a thousand events costs one
membership query per affected segment rather than one per event.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

# The changed-field name recorded for a contact created in this transaction.
CREATED = "created"


@dataclass
class ContactChanges:
    fields: dict[str, set[str]] = field(default_factory=dict)
    event_types: dict[str, set[str]] = field(default_factory=dict)
    # The oldest occurred_at of the new events of each type, which moves rolling-window checks earlier.
    oldest_event_by_type: dict[str, datetime] = field(default_factory=dict)
    scored: set[str] = field(default_factory=set)
    companies: set[str] = field(default_factory=set)

    def created(self, contact_id: str) -> None:
        self.fields.setdefault(contact_id, set()).add(CREATED)

    def changed(self, contact_id: str, names: Iterable[str]) -> None:
        self.fields.setdefault(contact_id, set()).update(names)

    def event(self, contact_id: str, event_type: str, occurred_at: datetime) -> None:
        self.event_types.setdefault(contact_id, set()).add(event_type)
        oldest = self.oldest_event_by_type.get(event_type)
        if oldest is None or occurred_at < oldest:
            self.oldest_event_by_type[event_type] = occurred_at

    def score(self, contact_id: str) -> None:
        self.scored.add(contact_id)

    def company_changed(self, company_id: str) -> None:
        self.companies.add(company_id)

    def forget(self, contact_id: str) -> None:
        """Drop an erased contact, which has nothing left to publish or evaluate."""
        self.fields.pop(contact_id, None)
        self.event_types.pop(contact_id, None)
        self.scored.discard(contact_id)

    @property
    def empty(self) -> bool:
        return not (self.fields or self.event_types or self.scored or self.companies)

    def touched(self) -> set[str]:
        return set(self.fields) | set(self.event_types) | self.scored

    def clear(self) -> None:
        self.fields.clear()
        self.event_types.clear()
        self.oldest_event_by_type.clear()
        self.scored.clear()
        self.companies.clear()
