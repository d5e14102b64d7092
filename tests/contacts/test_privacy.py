"""Erasure leaves no trace of the person in the contacts database but a tombstone; export is complete or 503."""

import json
import socket
import uuid
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import Text, cast, func, or_, select

from services.contacts.models import metadata
from services.contacts.privacy.models import ContactTombstone
from services.kit.contracts import contacts as topics
from services.kit.http import ServiceClient
from tests.contacts.support import Apps, create_contact, move_stage, published
from tests.support.apps import route_in_process


async def _rows_mentioning(app: FastAPI, needles: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Return, per table, the rows where any column's text contains any of the needles."""
    found: dict[str, list[dict[str, Any]]] = {}
    async with app.state.db.session() as session:
        for table in metadata.sorted_tables:
            condition = or_(*(cast(column, Text).contains(needle, autoescape=True) for column in table.columns for needle in needles))
            rows = (await session.execute(select(table).where(condition))).mappings().all()
            if rows:
                found[table.name] = [dict(row) for row in rows]
    return found


async def _person_with_everything(client: httpx.AsyncClient) -> dict[str, Any]:
    email = f"Erase.Me-{uuid.uuid4().hex[:8]}@Example.com"
    await client.put("/attributes/erasure_note", json={"type": "string", "label": "Note"})
    contact = await create_contact(
        client, email=email, first_name="Zoë", company={"domain": f"solo-{uuid.uuid4().hex[:8]}.test", "name": "Solo"},
        attributes={"erasure_note": f"reach me at {email}"},
    )
    contact_id = contact["id"]
    await client.post("/events", json={"contact_id": contact_id, "type": "form_submitted", "properties": {"email": email}})
    await client.post("/events", json={"contact_id": contact_id, "type": "email_bounced", "properties": {"bounce_class": "soft"}})
    await client.put(f"/contacts/{contact_id}/consent", json={"status": "unsubscribed", "topic": "newsletter"})
    await move_stage(client, contact_id, "lead")
    segment = {"name": "erasure", "filter": {"field": "email", "op": "eq", "value": email}}
    created = await client.post("/segments", json=segment)
    assert created.status_code == 201
    return {**contact, "segment_id": created.json()["id"]}


async def test_erasure_leaves_only_tombstone_and_erased_event(contacts_app: Apps) -> None:
    app, client = contacts_app
    contact = await _person_with_everything(client)
    needles = [contact["id"], contact["email"], contact["email"].lower(), json.dumps(contact["email"])[1:-1]]
    assert {"contact", "timeline_event", "consent_change", "stage_change", "segment_membership", "outbox"} <= set(await _rows_mentioning(app, needles))

    response = await client.delete(f"/contacts/{contact['id']}")

    assert response.status_code == 204
    assert (await client.get(f"/contacts/{contact['id']}")).status_code == 404
    remaining = await _rows_mentioning(app, needles)
    assert list(remaining) == ["outbox"]
    assert {row["topic"] for row in remaining["outbox"]} == {topics.CONTACT_ERASED}
    [erased] = await published(app, topics.CONTACT_ERASED, contact_id=contact["id"])
    assert erased == {"contact_id": contact["id"]}
    segment = (await client.get(f"/segments/{contact['segment_id']}")).json()
    assert segment["filter"] == {"field": "email", "op": "eq", "value": "[erased]"}


async def test_erasure_keeps_anonymous_tombstone(contacts_app: Apps) -> None:
    app, client = contacts_app
    contact = await create_contact(client, stage="sql")
    async with app.state.db.session() as session:
        before = (await session.exec(select(func.count()).select_from(ContactTombstone).where(ContactTombstone.stage == "sql"))).one()

    await client.delete(f"/contacts/{contact['id']}")

    async with app.state.db.session() as session:
        tombstones = (await session.execute(select(ContactTombstone).where(ContactTombstone.stage == "sql"))).scalars().all()
    assert len(tombstones) == before[0] + 1
    assert all(tombstone.id != contact["id"] for tombstone in tombstones)


async def test_erasure_keeps_company_shared_with_others(contacts_app: Apps) -> None:
    _, client = contacts_app
    domain = f"shared-{uuid.uuid4().hex[:8]}.test"
    leaving = await create_contact(client, company={"domain": domain, "name": "Shared"})
    staying = await create_contact(client, company={"domain": domain})

    await client.delete(f"/contacts/{leaving['id']}")

    assert (await client.get(f"/contacts/{staying['id']}")).json()["company"]["name"] == "Shared"


async def test_erasing_unknown_contact_is_404(contacts_app: Apps) -> None:
    _, client = contacts_app

    response = await client.delete(f"/contacts/{uuid.uuid4().hex}")

    assert response.status_code == 404


async def test_events_after_erasure_make_a_new_contact(contacts_app: Apps) -> None:
    _, client = contacts_app
    contact = await create_contact(client)
    await client.delete(f"/contacts/{contact['id']}")

    again = await client.post("/events", json={"email": contact["email"], "type": "page_view"})

    assert again.json()["contact_id"] != contact["id"]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_export_is_503_when_a_service_is_down(contacts_app: Apps, sequencer_app: Apps) -> None:
    app, client = contacts_app
    route_in_process(app, "sequencer", sequencer_app[0])
    settings = app.state.settings
    app.state.clients["scoring"] = ServiceClient(
        "scoring", f"http://127.0.0.1:{_closed_port()}", internal_token=settings.internal_token, timeout_s=2
    )
    contact = await create_contact(client)

    response = await client.get(f"/contacts/{contact['id']}/export")

    assert response.status_code == 503
    assert response.json()["service"] == "scoring"
    assert "incomplete" in response.json()["detail"]
    assert int(response.headers["retry-after"]) > 0


async def test_export_gathers_every_service(contacts_app: Apps, scoring_app: Apps, sequencer_app: Apps) -> None:
    app, client = contacts_app
    route_in_process(app, "scoring", scoring_app[0])
    route_in_process(app, "sequencer", sequencer_app[0])
    contact = await create_contact(client, first_name="Ida", company={"domain": f"ida-{uuid.uuid4().hex[:8]}.test"})
    await client.post("/events", json={"contact_id": contact["id"], "type": "page_view", "properties": {"url": "/pricing"}})
    await client.put(f"/contacts/{contact['id']}/consent", json={"status": "unsubscribed"})

    response = await client.get(f"/contacts/{contact['id']}/export")

    assert response.status_code == 200, response.text
    document = response.json()
    assert document["contact"]["first_name"] == "Ida"
    assert document["contact"]["company"]["domain"].startswith("ida-")
    assert [event["type"] for event in document["timeline"]] == ["page_view"]
    assert [change["to_status"] for change in document["consent"]["history"]] == ["unsubscribed"]
    assert [entry["to_stage"] for entry in document["stage_history"]] == ["subscriber"]
    assert {"scoring", "sequencer"} <= set(document)
