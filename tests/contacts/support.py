"""Helpers shared by the contacts tests: unique data, the outbox as a list of events, and the worker context."""

import uuid
from typing import Any

import httpx
from fastapi import FastAPI
from sqlmodel import col, select

from services.contacts.db import OutboxMessage

Apps = tuple[FastAPI, httpx.AsyncClient]


def unique_email(name: str = "person", domain: str = "example.com") -> str:
    return f"{name}-{uuid.uuid4().hex[:10]}@{domain}"


async def create_contact(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {"email": unique_email(), **fields}
    response = await client.post("/contacts", json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def published(app: FastAPI, topic: str, **payload_fields: Any) -> list[dict[str, Any]]:
    """Return the payloads of `topic` in the outbox (one per event, whatever the consumers) that match the fields."""
    async with app.state.db.session() as session:
        rows = (await session.exec(select(OutboxMessage).where(OutboxMessage.topic == topic).order_by(col(OutboxMessage.id)))).all()
    payloads: dict[str, dict[str, Any]] = {}
    for row in rows:
        payload = row.envelope["payload"]
        if all(_field(payload, name) == value for name, value in payload_fields.items()):
            payloads.setdefault(row.event_id, payload)
    return list(payloads.values())


def _field(payload: dict[str, Any], dotted: str) -> Any:
    value: Any = payload
    for part in dotted.split("__"):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def worker_context(app: FastAPI) -> dict[str, Any]:
    """The context a worker job receives, built from a running contacts app."""
    return {
        "db": app.state.db,
        "outbox": app.state.outbox,
        "settings": app.state.settings,
        "redis": app.state.redis,
        "clients": app.state.clients,
    }


async def move_stage(client: httpx.AsyncClient, contact_id: str, stage: str, **body: Any) -> httpx.Response:
    return await client.post(f"/contacts/{contact_id}/stage", json={"stage": stage, "actor": "sales:jane@example.com", **body})


async def history(client: httpx.AsyncClient, contact_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"/contacts/{contact_id}/stage-history", params={"limit": 500})
    assert response.status_code == 200, response.text
    return response.json()["items"]  # type: ignore[no-any-return]


async def upload(client: httpx.AsyncClient, content: bytes, mapping: dict[str, str], **form: str) -> httpx.Response:
    """Post a CSV import as multipart, the way the gateway forwards it."""
    import json

    files = {"file": ("contacts.csv", content, "text/csv")}
    return await client.post("/imports", files=files, data={"mapping": json.dumps(mapping), **form})


async def run_import_now(app: FastAPI, import_id: str) -> None:
    """Run the import job the contacts worker would run, in this process."""
    from services.contacts.imports.tasks import run_import

    assert await run_import({**worker_context(app), "job_try": 1}, import_id) == "done"
