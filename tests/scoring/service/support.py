"""Helpers for the scoring service tests: envelopes as the contacts service publishes them, and a harness."""

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import FastAPI
from pydantic import BaseModel
from sqlalchemy import delete
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from services.kit import clock
from services.kit.contracts import EventEnvelope
from services.kit.contracts import contacts as topics
from services.kit.outbox import Outbox
from services.scoring.db import OutboxMessage
from services.scoring.worker import event_consumer
from tests.support.workers import drain_queue

# A Monday at noon, so day, week and month caps start on known boundaries.
NOW = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)


def new_id() -> str:
    return uuid.uuid4().hex


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def envelope(topic: str, payload: BaseModel, *, occurred_at: datetime | None = None) -> EventEnvelope:
    return EventEnvelope(
        id=new_id(),
        topic=topic,
        producer="contacts",
        occurred_at=occurred_at or clock.now(),
        payload=payload.model_dump(mode="json"),
    )


def recorded(
    contact_id: str,
    event_type: str,
    *,
    at: datetime | None = None,
    properties: dict[str, Any] | None = None,
    event_id: str | None = None,
) -> EventEnvelope:
    moment = at or clock.now()
    event = topics.TimelineEvent(
        id=event_id or new_id(),
        contact_id=contact_id,
        type=event_type,
        occurred_at=moment,
        received_at=moment,
        properties=properties or {},
    )
    return envelope(topics.EVENT_RECORDED, topics.EventRecorded(event=event))


def changed(
    contact_id: str,
    *,
    email: str = "lead@example.com",
    attributes: dict[str, Any] | None = None,
    company: dict[str, Any] | None = None,
    stage: str = "subscriber",
    consent: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> EventEnvelope:
    snapshot = topics.ContactSnapshot(
        id=contact_id, email=email, attributes=attributes or {}, company=company, stage=stage, consent=consent or {}
    )
    return envelope(topics.CONTACT_CHANGED, topics.ContactChanged(contact=snapshot), occurred_at=at)


def stage_changed(contact_id: str, to_stage: str, *, at: datetime | None = None) -> EventEnvelope:
    change = topics.StageChanged(contact_id=contact_id, from_stage=None, to_stage=to_stage, at=at or clock.now())
    return envelope(topics.STAGE_CHANGED, change)


def erased(contact_id: str) -> EventEnvelope:
    return envelope(topics.CONTACT_ERASED, topics.ContactErased(contact_id=contact_id))


class RecordingOutbox:
    """The app's outbox, also keeping every published event so a test can read what was published."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.published: list[EventEnvelope] = []

    def publish(self, session: AsyncSession, topic: str, payload: Any, **kwargs: Any) -> EventEnvelope:
        published = self.outbox.publish(session, topic, payload, **kwargs)
        self.published.append(published)
        return published

    def payloads(self, topic: str, **match: Any) -> list[dict[str, Any]]:
        return [
            item.payload
            for item in self.published
            if item.topic == topic and all(item.payload.get(key) == value for key, value in match.items())
        ]


class ScoringHarness:
    """The real scoring app in process, its consumer, and the models a test created (archived at the end)."""

    def __init__(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        self.app = app
        self.client = client
        self.consumer = event_consumer()
        self.outbox = RecordingOutbox(app.state.outbox)
        self.models: list[str] = []

    @property
    def ctx(self) -> dict[str, Any]:
        return {"outbox": self.outbox, "db": self.app.state.db, "settings": self.app.state.settings,
                "redis": self.app.state.redis}

    async def deliver(self, *envelopes: EventEnvelope) -> list[str]:
        """Apply events as the worker's consumer does; return each outcome (applied, duplicate, ...)."""
        return [await self.consumer.apply(self.app.state.db, item, self.ctx) for item in envelopes]

    async def deliver_batch(self, *envelopes: EventEnvelope) -> dict[str, int]:
        """Apply events as one batch, as the worker's `consume_events` job does; count the outcomes."""
        return dict(await self.consumer.apply_batch(self.app.state.db, list(envelopes), self.ctx))

    async def put_model(self, document: dict[str, Any], *, name: str | None = None) -> dict[str, Any]:
        name = name or unique_name("model")
        response = await self.client.put(f"/scoring/models/{name}", json=document)
        assert response.status_code in (200, 201), response.text
        if name not in self.models:
            self.models.append(name)
        return response.json()  # type: ignore[no-any-return]

    async def score(self, contact_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/contacts/{contact_id}/score")
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    async def model_score(self, contact_id: str, model: str) -> dict[str, Any]:
        return (await self.score(contact_id))["models"][model]  # type: ignore[no-any-return]

    async def job(self, job_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/scoring/jobs/{job_id}")
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    async def finish_jobs(self, *job_ids: str, timeout_s: float = 240.0) -> list[int]:
        """Run the real scoring worker until the jobs are finished; return each `done` value read meanwhile.

        Another scoring worker of the test session (the `platform` fixture's) may take a job
        first, so the jobs' state decides when they are finished, not the worker's empty queue.
        """
        worker = asyncio.create_task(drain_queue("scoring"))
        seen: list[int] = []
        deadline = time.monotonic() + timeout_s
        try:
            for job_id in job_ids:
                while (job := await self.job(job_id))["state"] in ("queued", "running"):
                    seen.append(job["done"])
                    assert time.monotonic() < deadline, f"job {job_id} not finished: {job}"
                    await asyncio.sleep(0.05)
        finally:
            await worker
        return seen

    async def archive_models(self) -> None:
        for name in self.models:
            await self.client.delete(f"/scoring/models/{name}")

    async def forget_published(self) -> None:
        """Delete the outbox rows of the events this test published, which no relay will send."""
        ids = [item.id for item in self.outbox.published]
        async with self.app.state.db.session() as session:
            for start in range(0, len(ids), 500):
                statement = delete(OutboxMessage).where(col(OutboxMessage.event_id).in_(ids[start:start + 500]))
                await session.exec(statement)  # type: ignore[call-overload]
            await session.commit()
