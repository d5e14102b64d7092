"""An event batch that PostgreSQL rolls back as a deadlock victim is stored again, and never gets a 500."""

import asyncio
import uuid

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from services.contacts.timeline import ingest
from services.kit.db import Database
from tests.contacts.support import Apps

LOCK = text("SELECT stage FROM contact WHERE id = :id FOR UPDATE")


async def deadlocked_batch(client: httpx.AsyncClient, db: Database) -> tuple[httpx.Response, list[str]]:
    """Post a batch for two new contacts while another transaction locks them in the other order; return it and the ids."""
    ids = []
    for name in ("first", "second"):
        created = await client.post("/contacts", json={"email": f"{name}-{uuid.uuid4().hex[:8]}@example.com"})
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])
    first, second = ids
    events = [{"id": uuid.uuid4().hex, "contact_id": contact_id, "type": "page_view"} for contact_id in (second, first)]

    # Another transaction, such as a worker's stage change, locks the contacts in the other order.
    # The batch's insert locks the second contact and waits for the first. When the other
    # transaction requests the second, PostgreSQL aborts the batch, because it waited first.
    async with db.engine.connect() as other:
        await other.begin()
        await other.execute(LOCK, {"id": first})
        batch = asyncio.create_task(client.post("/events/batch", json={"events": events}))
        await asyncio.sleep(0.5)
        await other.execute(LOCK, {"id": second})
        await other.commit()
    return await batch, ids


def postgres_of(app: FastAPI) -> Database:
    db: Database = app.state.db
    if db.dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time, so its transactions never deadlock")
    return db


async def test_deadlocked_batch_is_stored(contacts_app: Apps) -> None:
    app, client = contacts_app

    response, ids = await deadlocked_batch(client, postgres_of(app))

    assert response.status_code == 202, response.text
    assert [item["status"] for item in response.json()["items"]] == ["stored", "stored"]
    for contact_id in ids:
        timeline = await client.get(f"/contacts/{contact_id}/timeline")
        assert [event["type"] for event in timeline.json()["items"]] == ["page_view"]


async def test_deadlock_without_retries_left_is_503(contacts_app: Apps, monkeypatch: pytest.MonkeyPatch) -> None:
    app, client = contacts_app
    monkeypatch.setattr(ingest, "CONFLICT_ATTEMPTS", 1)

    response, ids = await deadlocked_batch(client, postgres_of(app))

    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "1"
    for contact_id in ids:
        timeline = await client.get(f"/contacts/{contact_id}/timeline")
        assert timeline.json()["items"] == []
