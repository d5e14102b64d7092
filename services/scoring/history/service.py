"""The scoring history of a contact: the per-contact lock, stored events, facts and erasure.

Every change to a contact's scores runs inside `lock_contact` (or `lock_contacts` for a chunk), so
two workers never score the same contact at once. On PostgreSQL the lock is the row lock of the
contact's `contact_facts` row, taken by an UPDATE (one contact) or SELECT ... FOR UPDATE in
contact-id order (a chunk, so two chunks never deadlock). On SQLite the first write of a
transaction takes the database's single write lock, which serialises writers anyway.
"""

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import delete, update
from sqlalchemy import select as sa_select
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.kit.contracts.contacts import TimelineEvent
from services.kit.erasure import erased_key
from services.kit.db import insert_new
from services.kit.deferred_rows import write_deferred
from services.scoring.db import dialect_name, insert_ignore, insert_ignore_many
from services.scoring.history.models import ContactFacts, ErasedContact, ScoredEvent
from services.scoring.scores.models import ContactScore, LedgerRow
from services.scoring.thresholds.models import ThresholdFiring, ThresholdState

# Event properties that mark traffic from machines: privacy-protection opens, link scanners, bots.
MACHINE_FLAGS = ("machine", "bot")
# Stages from which a contact counts as having become an SQL.
SQL_OR_LATER = frozenset({"sql", "opportunity", "customer"})


class FactsRecord(Protocol):
    """What readers need of a contact's facts: a `ContactFacts` object or a plain row of its table."""

    contact_id: str
    facts: dict[str, Any]
    stage: str
    stages_reached: list[str]


def is_machine_event(properties: Mapping[str, Any]) -> bool:
    """Tell whether an event was flagged as machine or bot traffic, which never earns engagement points."""
    return any(_flag_set(properties.get(flag)) for flag in MACHINE_FLAGS)


def _flag_set(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value == 1
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return False


async def lock_contact(session: AsyncSession, contact_id: str, now: datetime) -> ContactFacts | None:
    """Lock a contact for the rest of the transaction and return its facts row, created when missing.

    Returns None for an erased contact, leaving nothing behind, so a late event cannot bring
    back the data of a person who asked to be forgotten. Erasure deletes the facts row together
    with writing the tombstone, so only a contact without a row needs the tombstone check.
    """
    facts = await _bump_revision(session, contact_id)
    if facts is not None:
        return facts

    values = {"contact_id": contact_id, "facts": {}, "stage": "subscriber", "updated_at": now,
              "stages_reached": [], "revision": 0}
    await insert_ignore(session, ContactFacts, values)
    facts = await _bump_revision(session, contact_id)
    if await session.get(ErasedContact, erased_key(contact_id)) is not None:
        await session.exec(delete(ContactFacts).where(col(ContactFacts.contact_id) == contact_id))  # type: ignore[call-overload]
        return None
    return facts


async def _bump_revision(session: AsyncSession, contact_id: str) -> ContactFacts | None:
    statement = (
        update(ContactFacts)
        .where(col(ContactFacts.contact_id) == contact_id)
        .values(revision=ContactFacts.revision + 1)
        .returning(ContactFacts)
        .execution_options(populate_existing=True)
    )
    result = await session.exec(statement)  # type: ignore[call-overload]
    return result.scalars().first()  # type: ignore[no-any-return]


async def lock_contacts(session: AsyncSession, contact_ids: Sequence[str]) -> None:
    """Lock several contacts for the rest of the transaction, in contact-id order."""
    if not contact_ids:
        return
    ordered = sorted(contact_ids)
    if dialect_name(session) == "postgresql":
        query = select(ContactFacts.contact_id).where(col(ContactFacts.contact_id).in_(ordered))
        await session.exec(query.order_by(ContactFacts.contact_id).with_for_update())
        return
    statement = (
        update(ContactFacts)
        .where(col(ContactFacts.contact_id).in_(ordered))
        .values(revision=ContactFacts.revision + 1)
    )
    await session.exec(statement)  # type: ignore[call-overload]


async def lock_existing_contacts(session: AsyncSession, contact_ids: Sequence[str]) -> list[ContactFacts]:
    """Lock the contacts that have a facts row, in contact-id order, and return their rows.

    Contacts without a row are left to `lock_contact`, which creates the row or finds the erasure.
    """
    if not contact_ids:
        return []
    await lock_contacts(session, contact_ids)
    query = (
        select(ContactFacts)
        .where(col(ContactFacts.contact_id).in_(sorted(contact_ids)))
        .execution_options(populate_existing=True)
    )
    return list((await session.exec(query)).all())


async def create_missing_contacts(session: AsyncSession, contact_ids: Sequence[str], now: datetime) -> set[str]:
    """Insert an empty facts row for each contact that has none and return the new ids.

    The rows go in in contact-id order. A batch calls this before it locks its contacts, then
    `drop_erased` on the new ids, in the order `lock_contact` follows for one contact.
    """
    if not contact_ids:
        return set()
    table = ContactFacts.__table__  # type: ignore[attr-defined]
    rows = [
        {"contact_id": contact_id, "facts": {}, "stage": "subscriber", "updated_at": now, "stages_reached": [], "revision": 0}
        for contact_id in sorted(set(contact_ids))
    ]
    return {contact_id for (contact_id,) in await insert_new(session, table, rows, table.c.contact_id)}


async def drop_erased(session: AsyncSession, contact_ids: Sequence[str]) -> set[str]:
    """Delete the facts rows of those contacts that were erased before and return their ids."""
    if not contact_ids:
        return set()
    by_key = {erased_key(contact_id): contact_id for contact_id in contact_ids}
    query = select(ErasedContact.contact_hash).where(col(ErasedContact.contact_hash).in_(list(by_key)))
    erased = {by_key[key] for key in (await session.exec(query)).all()}
    if erased:
        await session.exec(delete(ContactFacts).where(col(ContactFacts.contact_id).in_(sorted(erased))))  # type: ignore[call-overload]
    return erased


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    """An event as the history keeps it, with the columns of `ScoredEvent`.

    Scoring reads and stores events by the thousand and never changes them, and an ORM object took
    about 30 microseconds to build, against one for this.
    """

    id: str
    contact_id: str
    type: str
    occurred_at: datetime
    properties: dict[str, Any]

    @classmethod
    def of_row(cls, row: Any) -> "HistoryEvent":
        return cls(row.id, row.contact_id, row.type, row.occurred_at, row.properties)

    def values(self) -> dict[str, Any]:
        return asdict(self)


def scored_event(event: TimelineEvent) -> HistoryEvent:
    """Return a timeline event as the history keeps it."""
    return HistoryEvent(event.id, event.contact_id, event.type, event.occurred_at, event.properties)


async def store_event(session: AsyncSession, event: TimelineEvent) -> HistoryEvent:
    """Keep an event in the history, once per id, and return it as stored.

    A timeline event id never changes meaning, so a second copy is ignored by the insert rather
    than read first.
    """
    stored = scored_event(event)
    await insert_ignore(session, ScoredEvent, stored.values())
    return stored


async def store_events(session: AsyncSession, events: Sequence[TimelineEvent]) -> None:
    """Keep several events in the history with one statement, once per id, as `store_event` does."""
    if events:
        await insert_ignore_many(session, ScoredEvent, [scored_event(event).values() for event in events])


def event_document(event: HistoryEvent | ScoredEvent) -> dict[str, Any]:
    """Return an event in the shape the rules library reads: id, type, occurred_at, properties."""
    return {"id": event.id, "type": event.type, "occurred_at": event.occurred_at, "properties": event.properties}


def contact_document(facts: FactsRecord | None) -> dict[str, Any]:
    """Return the contact document that fit rules and `contact_when` conditions read."""
    if facts is None:
        return {}
    return {**facts.facts, "stage": facts.stage}


@dataclass(frozen=True)
class RecentHistory:
    """Events of some contacts between two instants, read once for a batch's pattern rules."""

    contact_ids: frozenset[str]
    types: frozenset[str]
    since: datetime
    until: datetime
    by_contact: Mapping[str, list[HistoryEvent]]

    def covers(self, event: HistoryEvent, window: timedelta, types: frozenset[str]) -> bool:
        return (
            event.contact_id in self.contact_ids
            and types <= self.types
            and self.since <= event.occurred_at - window
            and event.occurred_at + window <= self.until
        )


async def read_recent_history(
    session: AsyncSession, contact_ids: Sequence[str], *, since: datetime, until: datetime, types: frozenset[str]
) -> RecentHistory:
    """Read the contacts' events of `types` between `since` and `until` with one statement."""
    table = ScoredEvent.__table__  # type: ignore[attr-defined]
    query = sa_select(table).where(
        table.c.contact_id.in_(list(contact_ids)),
        table.c.type.in_(sorted(types)),
        table.c.occurred_at >= since,
        table.c.occurred_at <= until,
    )
    by_contact: dict[str, list[HistoryEvent]] = {}
    for row in (await session.exec(query)).all():  # type: ignore[call-overload]
        by_contact.setdefault(row.contact_id, []).append(HistoryEvent.of_row(row))
    return RecentHistory(frozenset(contact_ids), types, since, until, by_contact)


async def recent_events(
    session: AsyncSession,
    event: HistoryEvent,
    *,
    window: timedelta,
    types: frozenset[str],
    history: RecentHistory | None = None,
) -> list[dict[str, Any]]:
    """Return the contact's human events of `types` within `window` before or after `event`.

    With a `history` that covers the event, no statement is run.
    """
    if not types or window <= timedelta(0):
        return []
    if history is not None and history.covers(event, window, types):
        low, high = event.occurred_at - window, event.occurred_at + window
        return [
            event_document(row)
            for row in history.by_contact.get(event.contact_id, [])
            if row.type in types and low <= row.occurred_at <= high and row.id != event.id
            and not is_machine_event(row.properties)
        ]
    table = ScoredEvent.__table__  # type: ignore[attr-defined]
    query = sa_select(table).where(
        table.c.contact_id == event.contact_id,
        table.c.type.in_(sorted(types)),
        table.c.occurred_at >= event.occurred_at - window,
        table.c.occurred_at <= event.occurred_at + window,
        table.c.id != event.id,
    )
    rows = (await session.exec(query)).all()  # type: ignore[call-overload]
    return [event_document(HistoryEvent.of_row(row)) for row in rows if not is_machine_event(row.properties)]


async def events_of(session: AsyncSession, contact_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """Return the human events of each contact, for replaying whole histories."""
    history: dict[str, list[dict[str, Any]]] = {contact_id: [] for contact_id in contact_ids}
    if not contact_ids:
        return history
    # Plain rows instead of ORM objects: a chunk reads thousands of events and never changes them.
    table = ScoredEvent.__table__  # type: ignore[attr-defined]
    query = sa_select(table).where(table.c.contact_id.in_(list(contact_ids)))
    for row in (await session.exec(query)).all():  # type: ignore[call-overload]
        if not is_machine_event(row.properties):
            history[row.contact_id].append(
                {"id": row.id, "type": row.type, "occurred_at": row.occurred_at, "properties": row.properties}
            )
    return history


async def facts_of(session: AsyncSession, contact_ids: Sequence[str]) -> dict[str, FactsRecord]:
    """Return the facts of each known contact as read-only rows with the columns of `ContactFacts`."""
    if not contact_ids:
        return {}
    table = ContactFacts.__table__  # type: ignore[attr-defined]
    query = sa_select(table).where(table.c.contact_id.in_(list(contact_ids)))
    return {row.contact_id: row for row in (await session.exec(query)).all()}  # type: ignore[call-overload]


def apply_snapshot(facts: ContactFacts, snapshot: Mapping[str, Any], at: datetime, now: datetime) -> bool:
    """Store a contact snapshot published at `at`; return False when a newer one is already stored."""
    if facts.facts_at is not None and at < facts.facts_at:
        return False
    facts.facts = {key: value for key, value in snapshot.items() if key != "id"}
    facts.facts_at = at
    stage = snapshot.get("stage")
    if isinstance(stage, str):
        apply_stage(facts, stage, at)
    facts.updated_at = now
    return True


def apply_stage(facts: ContactFacts, stage: str, at: datetime) -> None:
    """Record that the contact was in `stage` at `at`; an older change does not overwrite a newer one."""
    if stage not in facts.stages_reached:
        facts.stages_reached = [*facts.stages_reached, stage]
    if facts.stage_at is None or at >= facts.stage_at:
        facts.stage = stage
        facts.stage_at = at


def reached_stage(facts: FactsRecord, outcome: str) -> bool:
    """Tell whether the contact ever reached `outcome` ("sql" counts opportunity and customer too)."""
    reached = {*facts.stages_reached, facts.stage}
    if outcome == "sql":
        return bool(reached & SQL_OR_LATER)
    return outcome in reached


async def erase_contact(session: AsyncSession, contact_id: str, now: datetime) -> None:
    """Delete everything scoring stores about a contact and keep only a hash of its id."""
    # Ledger rows recorded earlier in this transaction go in first, so the delete removes them too.
    await write_deferred(session, LedgerRow.__table__)  # type: ignore[attr-defined]
    for model in (ScoredEvent, ContactScore, LedgerRow, ThresholdState, ThresholdFiring, ContactFacts):
        column = model.contact_id  # type: ignore[attr-defined]
        await session.exec(delete(model).where(column == contact_id))  # type: ignore[call-overload]
    await insert_ignore(session, ErasedContact, {"contact_hash": erased_key(contact_id), "erased_at": now})
