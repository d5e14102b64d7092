"""Storing events from the API in transactions of one chunk each, with a result per event."""

from collections.abc import Sequence

from sqlalchemy.exc import DBAPIError, IntegrityError

from services.contacts.changes import ContactChanges
from services.contacts.publishing import flush_changes
from services.contacts.settings import ContactsSettings
from services.contacts.timeline.service import EventIn, EventResult, record_events
from services.kit.db import Database
from services.kit.logging import get_logger
from services.kit.outbox import Outbox
from services.kit.problems import is_transaction_conflict

log = get_logger(__name__)

# Each attempt finds the rows that the requests it collided with committed, so a third collision
# needs a third concurrent request for the same new address at the same instant.
SINGLE_EVENT_ATTEMPTS = 3
# A chunk whose transaction PostgreSQL rolled back as a deadlock victim is stored again this often.
CONFLICT_ATTEMPTS = 3


async def store_events(
    db: Database, outbox: Outbox, items: Sequence[tuple[int, EventIn]], settings: ContactsSettings
) -> list[EventResult]:
    """Store events in chunks of `event_batch_chunk`, one transaction per chunk.

    When a chunk's commit fails on a unique key (another request stored one of its event ids, or
    created one of its contacts, at the same moment), that chunk is stored again one event per
    transaction, and each event then finds the row the other request wrote. A chunk rolled back as
    a deadlock victim, which a worker locking the same contacts in another order can cause, is
    stored again whole.
    """
    results: list[EventResult] = []
    size = settings.event_batch_chunk
    for start in range(0, len(items), size):
        chunk = items[start : start + size]
        try:
            results.extend(await _store_chunk(db, outbox, chunk, settings))
        except IntegrityError as error:
            log.info("events.chunk_retried_singly", events=len(chunk), error=str(error.orig)[:200])
            for item in chunk:
                results.extend(await _store_single(db, outbox, item, settings))
    return results


async def _store_single(db: Database, outbox: Outbox, item: tuple[int, EventIn], settings: ContactsSettings) -> list[EventResult]:
    """Store one event, again when another request creates its contact in the meantime.

    Concurrent requests for the same new addresses can collide more than once, and an event whose
    chunk was already partly stored must not turn the whole request into a 500.
    """
    for attempt in range(1, SINGLE_EVENT_ATTEMPTS + 1):
        try:
            return await _store_chunk(db, outbox, [item], settings)
        except IntegrityError as error:
            if attempt == SINGLE_EVENT_ATTEMPTS:
                raise
            log.info("events.single_retried", index=item[0], attempt=attempt, error=str(error.orig)[:200])
    raise AssertionError("unreachable")  # pragma: no cover - the loop always returns or raises


async def _store_chunk(
    db: Database, outbox: Outbox, chunk: Sequence[tuple[int, EventIn]], settings: ContactsSettings
) -> list[EventResult]:
    for attempt in range(1, CONFLICT_ATTEMPTS + 1):
        try:
            return await _store_chunk_once(db, outbox, chunk, settings)
        except DBAPIError as error:
            if isinstance(error, IntegrityError) or not is_transaction_conflict(error) or attempt == CONFLICT_ATTEMPTS:
                raise
            log.warning("events.chunk_conflict_retried", events=len(chunk), attempt=attempt, error=str(error.orig)[:200])
    raise AssertionError("unreachable")  # pragma: no cover - the loop always returns or raises


async def _store_chunk_once(
    db: Database, outbox: Outbox, chunk: Sequence[tuple[int, EventIn]], settings: ContactsSettings
) -> list[EventResult]:
    async with db.session() as session:
        changes = ContactChanges()
        results = await record_events(session, outbox, chunk, changes, settings)
        await flush_changes(session, outbox, changes, settings)
        await session.commit()
    return results
