"""At send time the worker asks the contacts service whether the email may go out."""

import uuid
from datetime import UTC, datetime, timedelta

import httpx
from fastapi import FastAPI
from sqlmodel import select

from services.kit import clock
from services.kit.http import ServiceClient
from services.sequencer.enrolments.models import Enrolment
from services.sequencer.enrolments.runtime import Runtime
from tests.sequencer.support import Sink, deliver, drive, live_through, snapshot

START = datetime(2024, 6, 4, 9, 0, tzinfo=UTC)
Apps = tuple[FastAPI, httpx.AsyncClient]


def route_contacts(runtime: Runtime, contacts: FastAPI) -> None:
    runtime.contacts = ServiceClient(
        "contacts", "http://contacts", internal_token=runtime.settings.internal_token, transport=httpx.ASGITransport(app=contacts)
    )


async def two_email_sequence(client: httpx.AsyncClient) -> str:
    ids = []
    for subject in ("First", "Second"):
        ids.append((await client.post("/templates", json={"name": subject, "subject": subject, "html": "<p>Hi</p>"})).json()["id"])
    steps = [{"email": {"template_id": ids[0]}}, {"wait": {"days": 1}}, {"email": {"template_id": ids[1]}}]
    sequence_id = (await client.post("/sequences", json={"name": "C", "trigger": {"type": "manual"}, "steps": steps})).json()["id"]
    await client.post(f"/sequences/{sequence_id}/activate")
    return str(sequence_id)


async def test_unsubscribe_known_only_to_contacts_stops_send(api: Apps, runtime: Runtime, sink: Sink, contacts_app: Apps) -> None:
    _, client = api
    contacts, contacts_client = contacts_app
    route_contacts(runtime, contacts)
    clock.freeze(START)
    address = f"asked-{uuid.uuid4().hex[:8]}@example.com"
    contact_id = (await contacts_client.post("/contacts", json={"email": address})).json()["id"]
    await deliver(runtime, "contact.changed", snapshot(contact_id, address))
    sequence_id = await two_email_sequence(client)
    await client.post(f"/sequences/{sequence_id}/enrollments", json={"contact_id": contact_id})
    await drive(runtime)

    changed = await contacts_client.put(f"/contacts/{contact_id}/consent", json={"status": "unsubscribed"})
    assert changed.status_code == 200, changed.text
    await live_through(runtime, START + timedelta(days=3), sequence_id=sequence_id)

    assert [message["Subject"] for message in sink.handler.to(address)] == ["First"]
    async with runtime.db.session() as session:
        enrolment = (await session.exec(select(Enrolment).where(Enrolment.contact_id == contact_id))).one()
    assert (enrolment.state, enrolment.exit_reason) == ("exited", "unsubscribed")


async def test_local_copy_used_when_contacts_unreachable(api: Apps, runtime: Runtime, sink: Sink) -> None:
    _, client = api
    runtime.contacts = ServiceClient(
        "contacts", "http://contacts", internal_token="t", transport=httpx.MockTransport(lambda request: httpx.Response(503))
    )
    clock.freeze(START)
    address = f"fallback-{uuid.uuid4().hex[:8]}@example.com"
    contact_id = uuid.uuid4().hex
    await deliver(runtime, "contact.changed", snapshot(contact_id, address))
    sequence_id = await two_email_sequence(client)
    await client.post(f"/sequences/{sequence_id}/enrollments", json={"contact_id": contact_id})

    await drive(runtime)

    assert [message["Subject"] for message in sink.handler.to(address)] == ["First"]


async def test_unreachable_contacts_asked_again_only_later(api: Apps, runtime: Runtime, sink: Sink) -> None:
    _, client = api
    calls: list[str] = []

    def unavailable(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(503)

    runtime.contacts = ServiceClient("contacts", "http://contacts", internal_token="t", transport=httpx.MockTransport(unavailable))
    clock.freeze(START)
    sequence_id = await two_email_sequence(client)

    async def enrol_new(number: int) -> None:
        contact_id = uuid.uuid4().hex
        await deliver(runtime, "contact.changed", snapshot(contact_id, f"breaker-{number}-{contact_id[:6]}@example.com"))
        await client.post(f"/sequences/{sequence_id}/enrollments", json={"contact_id": contact_id})

    await enrol_new(0)
    await drive(runtime)
    for number in (1, 2):
        await enrol_new(number)
    await drive(runtime)

    assert len([call for call in calls if call.endswith("/sendability")]) == 1
    assert len([message for message in sink.handler.messages if str(message["To"]).startswith("breaker-")]) == 3
