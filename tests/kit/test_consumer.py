"""Event consumers apply each event id once, however often it is delivered."""

import asyncio
import uuid
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from services.kit import clock
from services.kit.consumer import EventConsumer, retry_delay_s
from services.kit.contracts import EventEnvelope
from services.kit.db import Database
from services.sequencer.db import ProcessedEvent
from services.sequencer.settings import SequencerSettings


def _envelope() -> EventEnvelope:
    return EventEnvelope(id=uuid.uuid4().hex, topic="test.counted", producer="tests", occurred_at=clock.now(), payload={})


async def test_second_delivery_is_a_duplicate() -> None:
    calls: list[str] = []

    async def handler(session: AsyncSession, envelope: EventEnvelope, ctx: dict[str, Any]) -> None:
        calls.append(envelope.id)

    consumer = EventConsumer(ProcessedEvent, {"test.counted": handler})
    db = Database(SequencerSettings().database_url)
    envelope = _envelope()

    first = await consumer.apply(db, envelope, {})
    second = await consumer.apply(db, envelope, {})

    assert (first, second) == ("applied", "duplicate")
    assert calls == [envelope.id]
    await db.dispose()


async def test_concurrent_deliveries_apply_once() -> None:
    async def handler(session: AsyncSession, envelope: EventEnvelope, ctx: dict[str, Any]) -> None:
        await asyncio.sleep(0.05)

    consumer = EventConsumer(ProcessedEvent, {"test.counted": handler})
    db = Database(SequencerSettings().database_url)
    envelope = _envelope()

    outcomes = await asyncio.gather(*(consumer.apply(db, envelope, {}) for _ in range(4)), return_exceptions=True)

    applied = [outcome for outcome in outcomes if outcome == "applied"]
    assert len(applied) == 1, outcomes
    await db.dispose()


async def test_unknown_topic_is_recorded_and_ignored() -> None:
    consumer = EventConsumer(ProcessedEvent, {})
    db = Database(SequencerSettings().database_url)
    envelope = _envelope()

    assert await consumer.apply(db, envelope, {}) == "ignored"
    assert await consumer.apply(db, envelope, {}) == "duplicate"
    await db.dispose()


def test_retry_delay_grows_and_is_capped() -> None:
    assert retry_delay_s(1) == 0.5
    assert retry_delay_s(2) == 1.0
    assert retry_delay_s(20) == 60.0
