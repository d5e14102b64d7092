"""The public /v1 routes of sequences and templates: scopes, forwarding, and errors passed on unchanged."""

import uuid
from datetime import UTC, datetime
from urllib.parse import quote

import httpx
from fastapi import FastAPI
from sqlmodel import select

from services.gateway.keys.service import create_key
from services.kit import clock
from services.sequencer.enrolments.runtime import Runtime
from services.sequencer.sending.models import SentMessage
from tests.sequencer.support import Sink, add_contact, drive
from tests.support.apps import route_in_process

Apps = tuple[FastAPI, httpx.AsyncClient]


async def key_with(gateway: FastAPI, scopes: list[str]) -> dict[str, str]:
    async with gateway.state.db.session() as session:
        _, key = await create_key(session, name=f"sequencer-{uuid.uuid4().hex[:6]}", scopes=scopes)
    return {"Authorization": f"Bearer {key}"}


async def test_sequence_flow_through_gateway(gateway_app: Apps, api: Apps, runtime: Runtime, sink: Sink) -> None:
    gateway, client = gateway_app
    route_in_process(gateway, "sequencer", api[0])
    writer = await key_with(gateway, ["sequences:write"])
    clock.freeze(datetime(2024, 6, 4, 9, 0, tzinfo=UTC))

    template = await client.post("/v1/templates", json={"name": "g", "subject": "Hello", "html": "<p>Hi</p>"}, headers=writer)
    body = {"name": "Public", "trigger": {"type": "manual"}, "steps": [{"id": "hello", "email": {"template_id": template.json()["id"]}}]}
    created = await client.post("/v1/sequences", json=body, headers=writer)
    activated = await client.post(f"/v1/sequences/{created.json()['id']}/activate", headers=writer)
    contact_id = await add_contact(runtime, "public@example.com")
    enrolled = await client.post(f"/v1/sequences/{created.json()['id']}/enrollments", json={"contact_id": contact_id}, headers=writer)
    await drive(runtime)
    report = await client.get(f"/v1/sequences/{created.json()['id']}/report", headers=writer)

    assert (template.status_code, created.status_code, activated.status_code, enrolled.status_code) == (201, 201, 200, 201)
    assert report.json()["steps"][0]["sent"] == 1
    async with runtime.db.session() as session:
        message = (await session.exec(select(SentMessage).where(SentMessage.contact_id == contact_id))).one()
    read = await client.get(f"/v1/messages/{quote(message.message_id)}", headers=writer)
    events = await client.get(f"/v1/messages/{quote(message.message_id)}/events", headers=writer)
    assert (read.status_code, read.json()["state"]) == (200, "sent")
    assert events.json()["items"] == []


async def test_validation_errors_pass_through(gateway_app: Apps, api: Apps) -> None:
    gateway, client = gateway_app
    route_in_process(gateway, "sequencer", api[0])
    writer = await key_with(gateway, ["sequences:write"])

    bad_template = await client.post("/v1/templates", json={"name": "b", "subject": "{{ contact.first_name }}", "html": "<p></p>"}, headers=writer)
    bad_sequence = await client.post("/v1/sequences", json={"name": "B", "trigger": {"type": "manual"}, "steps": [{"wait": {"days": -2}}]}, headers=writer)
    missing = await client.get("/v1/sequences/seq_missing", headers=writer)

    assert (bad_template.status_code, [error["field"] for error in bad_template.json()["errors"]]) == (422, ["subject"])
    assert (bad_sequence.status_code, [error["field"] for error in bad_sequence.json()["errors"]]) == (422, ["steps[0].wait.days"])
    assert bad_sequence.headers["content-type"] == "application/problem+json"
    assert missing.status_code == 404


async def test_scopes_are_checked(gateway_app: Apps, api: Apps) -> None:
    gateway, client = gateway_app
    route_in_process(gateway, "sequencer", api[0])
    reader = await key_with(gateway, ["sequences:read"])
    outsider = await key_with(gateway, ["contacts:read"])

    listed = await client.get("/v1/sequences", headers=reader)
    create_as_reader = await client.post("/v1/templates", json={"name": "r", "subject": "S", "html": "<p></p>"}, headers=reader)
    list_as_outsider = await client.get("/v1/templates", headers=outsider)
    preview_as_reader = await client.post("/v1/templates/t1/preview", json={"contact_id": "c1"}, headers=reader)

    assert listed.status_code == 200
    assert create_as_reader.status_code == 403
    assert list_as_outsider.status_code == 403
    # A preview shows the contact's fields, which this key may not read.
    assert preview_as_reader.status_code == 403
    assert preview_as_reader.json()["required_scope"] == "contacts:read"


def test_openapi_documents_sequence_definition(gateway_app: Apps) -> None:
    gateway, _ = gateway_app

    spec = gateway.openapi()

    body = spec["paths"]["/v1/sequences"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["$ref"] == "#/components/schemas/SequenceDefinition"
    assert "SequenceDefinition" in spec["components"]["schemas"]
    assert "/v1/sequences/{sequence_id}/report" in spec["paths"]
