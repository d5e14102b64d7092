"""The scoring consumer alone, in this process: how many `contact.event_recorded` events a second it applies.

It migrates a fresh database, which installs the `default` model and its reference rule set. Then
it applies events through the real consumer, as a worker does: in batches of `JOB_BATCH_SIZE`, one
batch at a time, or with `--batch 1` one event per job with `concurrency` jobs at once, as the worker
did before the relay batched events. The first events are spread over many contacts (four events
each), the rest all go to one contact. No HTTP, Redis or other service takes part, so a profile of
this run shows the scoring path alone.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from services.kit.contracts import EventEnvelope
from services.kit.contracts import contacts as topics
from services.kit.db import Database
from services.kit.outbox import JOB_BATCH_SIZE, Outbox
from services.scoring.db import OutboxMessage
from services.scoring.worker import event_consumer

EVENT_TYPES = [
    ("page_view", {"url": "https://acme.example/pricing"}),
    ("page_view", {"url": "https://acme.example/blog"}),
    ("email_opened", {}),
    ("email_clicked", {}),
    ("content_downloaded", {}),
    ("form_submitted", {"form": "demo"}),
]


@dataclass(frozen=True)
class ConsumerRates:
    many_contacts: float
    one_contact: float


def _recorded(contact_id: str, event_type: str, at: datetime, properties: dict[str, Any]) -> EventEnvelope:
    event = topics.TimelineEvent(
        id=uuid.uuid4().hex, contact_id=contact_id, type=event_type, occurred_at=at, received_at=at, properties=properties,
    )
    payload = topics.EventRecorded(event=event).model_dump(mode="json")
    return EventEnvelope(id=uuid.uuid4().hex, topic=topics.EVENT_RECORDED, producer="contacts", occurred_at=at, payload=payload)


def _events(contacts: list[str], count: int) -> list[EventEnvelope]:
    generator = random.Random(1)
    now = datetime.now(UTC)
    envelopes = []
    for _ in range(count):
        event_type, properties = generator.choice(EVENT_TYPES)
        at = now - timedelta(minutes=generator.randrange(30 * 24 * 60))
        envelopes.append(_recorded(generator.choice(contacts), event_type, at, properties))
    return envelopes


async def _apply_all(db: Database, envelopes: list[EventEnvelope], concurrency: int, batch: int) -> float:
    consumer = event_consumer()
    ctx: dict[str, Any] = {"outbox": Outbox(OutboxMessage, service="scoring", namespace="benchmark")}
    started = time.perf_counter()
    if batch > 1:
        for start in range(0, len(envelopes), batch):
            await consumer.apply_batch(db, envelopes[start : start + batch], ctx)
        return len(envelopes) / (time.perf_counter() - started)

    queue: asyncio.Queue[EventEnvelope] = asyncio.Queue()
    for envelope in envelopes:
        queue.put_nowait(envelope)

    async def work() -> None:
        while not queue.empty():
            await consumer.apply(db, queue.get_nowait(), ctx)

    await asyncio.gather(*(work() for _ in range(concurrency)))
    return len(envelopes) / (time.perf_counter() - started)


async def measure_consumer(url: str, events: int, concurrency: int, batch: int = JOB_BATCH_SIZE) -> ConsumerRates:
    """Apply `events` events over events/4 contacts, then events/4 for one contact; return both rates."""
    db = Database(url)
    try:
        contacts = [uuid.uuid4().hex for _ in range(max(1, events // 4))]
        many_contacts = await _apply_all(db, _events(contacts, events), concurrency, batch)
        one_contact = await _apply_all(db, _events([uuid.uuid4().hex], max(1, events // 4)), concurrency, batch)
    finally:
        await db.dispose()
    return ConsumerRates(many_contacts, one_contact)
