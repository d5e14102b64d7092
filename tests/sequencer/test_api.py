"""The sequencer's internal API: validation that names the field, versions, activation, enrolment, export, erasure."""

import uuid
from datetime import UTC, datetime, timedelta

import httpx
from fastapi import FastAPI

from services.kit import clock
from services.sequencer.enrolments.runtime import Runtime
from tests.sequencer.support import Sink, add_contact, deliver, drive, live_through, snapshot, timeline_event
from tests.support.apps import route_in_process

START = datetime(2024, 6, 3, 8, 0, tzinfo=UTC)


async def template(client: httpx.AsyncClient, subject: str, html: str | None = None) -> str:
    response = await client.post("/templates", json={"name": subject, "subject": subject, "html": html or f"<p>{subject}</p>"})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def fields(response: httpx.Response) -> list[str]:
    return [error["field"] for error in response.json()["errors"]]


# --- templates ------------------------------------------------------------------------------------------


async def test_invalid_template_names_the_part(api) -> None:
    _, client = api

    unguarded = await client.post("/templates", json={"name": "x", "subject": "Hi {{ contact.first_name }}", "html": "<p>ok</p>"})
    unsafe = await client.post("/templates", json={"name": "x", "subject": "Hi", "html": "<p>{{ config }}</p>"})
    broken = await client.post("/templates", json={"name": "x", "subject": "Hi", "html": "<p>\n{% if %}</p>", "text": "{{ contact.__class__ }}"})

    assert (unguarded.status_code, fields(unguarded)) == (422, ["subject"])
    assert "fallback" in unguarded.json()["errors"][0]["message"]
    assert (unsafe.status_code, fields(unsafe)) == (422, ["html"])
    assert broken.status_code == 422
    assert fields(broken) == ["html", "text", "text"]
    assert broken.json()["errors"][0]["message"].startswith("line 2")
    assert broken.headers["content-type"] == "application/problem+json"


async def test_template_read_list_and_missing(api) -> None:
    _, client = api
    template_id = await template(client, f"Listed {uuid.uuid4().hex[:6]}")
    await template(client, f"Listed {uuid.uuid4().hex[:6]}")

    read = await client.get(f"/templates/{template_id}")
    missing = await client.get("/templates/tpl_missing")
    page = await client.get("/templates", params={"limit": 1})
    following = await client.get("/templates", params={"limit": 1, "cursor": page.json()["next_cursor"]})

    assert read.json()["id"] == template_id
    assert missing.status_code == 404
    assert len(page.json()["items"]) == 1
    assert following.json()["items"][0]["id"] != page.json()["items"][0]["id"]


async def test_preview_renders_for_contact(api, runtime: Runtime) -> None:
    _, client = api
    template_id = await template(client, "Hi {{ contact.first_name | fallback('there') }}", "<p>Hello {{ company.name | fallback('you') }}</p>")
    named = await add_contact(runtime, first_name="Ada", company={"name": "Analytical Engines"})
    unnamed = await add_contact(runtime)

    first = (await client.post(f"/templates/{template_id}/preview", json={"contact_id": named})).json()
    second = (await client.post(f"/templates/{template_id}/preview", json={"contact_id": unnamed})).json()

    assert first["subject"] == "Hi Ada"
    assert "Hello Analytical Engines" in first["html"]
    assert second["subject"] == "Hi there"
    assert "Hello you" in second["html"]
    assert "/u/preview" in first["text"]


async def test_preview_token_empty_for_contact_is_422(api, runtime: Runtime) -> None:
    _, client = api
    # Item access slips past the save-time check, so rendering is what stops it.
    template_id = await template(client, "Hello", "<p>Hi {{ contact['first_name'] }}</p>")
    contact_id = await add_contact(runtime)

    response = await client.post(f"/templates/{template_id}/preview", json={"contact_id": contact_id})

    assert (response.status_code, fields(response)) == (422, ["html"])
    assert "contact.first_name" in response.json()["errors"][0]["message"]


async def test_preview_copies_contact_from_contacts_service(api, contacts_app) -> None:
    app, client = api
    contacts, contacts_client = contacts_app
    route_in_process(app, "contacts", contacts)
    created = await contacts_client.post("/contacts", json={"email": f"fetched-{uuid.uuid4().hex[:6]}@example.com", "first_name": "Lin"})
    template_id = await template(client, "Hi {{ contact.first_name | fallback('there') }}")

    preview = await client.post(f"/templates/{template_id}/preview", json={"contact_id": created.json()["id"]})
    missing = await client.post(f"/templates/{template_id}/preview", json={"contact_id": uuid.uuid4().hex})

    assert preview.json()["subject"] == "Hi Lin"
    assert missing.status_code == 404


# --- sequences ------------------------------------------------------------------------------------------


async def test_invalid_sequence_names_each_field(api) -> None:
    _, client = api
    body = {
        "name": "Broken",
        "trigger": {"type": "event", "event_type": "page_view", "conditions": [{"property": "url", "op": "matches", "value": "("}]},
        "steps": [{"wait": {"days": -1}}, {"email": {"template_id": "t"}, "wait": {"days": 1}}],
    }

    response = await client.post("/sequences", json=body)

    assert response.status_code == 422
    assert set(fields(response)) == {"trigger.conditions[0].value", "steps[0].wait.days", "steps[1]"}


async def test_activation_needs_existing_templates(api) -> None:
    _, client = api
    known = await template(client, "Known")
    steps = [{"email": {"template_id": known}}, {"wait": {"days": 1}}, {"email": {"template_id": "tpl_gone"}}]
    sequence_id = (await client.post("/sequences", json={"name": "S", "trigger": {"type": "manual"}, "steps": steps})).json()["id"]

    response = await client.post(f"/sequences/{sequence_id}/activate")

    assert (response.status_code, fields(response)) == (422, ["steps[2].email.template_id"])
    assert (await client.get(f"/sequences/{sequence_id}")).json()["status"] == "draft"


async def test_editing_active_sequence_makes_new_version(api, runtime: Runtime, sink: Sink) -> None:
    _, client = api
    clock.freeze(START)
    first, second, replacement = await template(client, "First"), await template(client, "Second"), await template(client, "Replacement")

    def body(last: str) -> dict[str, object]:
        steps = [{"id": "one", "email": {"template_id": first}}, {"wait": {"days": 1}}, {"id": "two", "email": {"template_id": last}}]
        return {"name": "Versioned", "trigger": {"type": "manual"}, "steps": steps}

    created = (await client.post("/sequences", json=body(second))).json()
    draft_edit = (await client.put(f"/sequences/{created['id']}", json=body(second))).json()
    await client.post(f"/sequences/{created['id']}/activate")
    early = await add_contact(runtime, "early@example.com")
    await client.post(f"/sequences/{created['id']}/enrollments", json={"contact_id": early})

    edited = (await client.put(f"/sequences/{created['id']}", json=body(replacement))).json()
    late = await add_contact(runtime, "late@example.com")
    enrolled_late = (await client.post(f"/sequences/{created['id']}/enrollments", json={"contact_id": late})).json()
    await live_through(runtime, START + timedelta(days=3), sequence_id=created["id"])

    assert (created["version"], draft_edit["version"], edited["version"], enrolled_late["version"]) == (1, 1, 2, 2)
    assert edited["status"] == "active"
    assert [m["Subject"] for m in sink.handler.to("early@example.com")] == ["First", "Second"]
    assert [m["Subject"] for m in sink.handler.to("late@example.com")] == ["First", "Replacement"]


async def test_pause_holds_steps_until_resumed(api, runtime: Runtime, sink: Sink) -> None:
    _, client = api
    clock.freeze(START)
    steps = [{"email": {"template_id": await template(client, "Before")}}, {"wait": {"days": 1}}, {"email": {"template_id": await template(client, "After")}}]
    sequence_id = (await client.post("/sequences", json={"name": "P", "trigger": {"type": "manual"}, "steps": steps})).json()["id"]
    await client.post(f"/sequences/{sequence_id}/activate")
    contact_id = await add_contact(runtime, "paused@example.com")
    await client.post(f"/sequences/{sequence_id}/enrollments", json={"contact_id": contact_id})
    await drive(runtime)

    assert (await client.post(f"/sequences/{sequence_id}/pause")).json()["status"] == "paused"
    clock.freeze(START + timedelta(days=2))
    await drive(runtime)
    assert [m["Subject"] for m in sink.handler.to("paused@example.com")] == ["Before"]
    refused = await client.post(f"/sequences/{sequence_id}/enrollments", json={"contact_id": await add_contact(runtime)})
    assert (refused.status_code, refused.json()["reason"]) == (409, "not_active")

    await client.post(f"/sequences/{sequence_id}/activate")
    await drive(runtime)
    assert [m["Subject"] for m in sink.handler.to("paused@example.com")] == ["Before", "After"]


async def test_draft_cannot_be_paused_or_enrolled(api, runtime: Runtime) -> None:
    _, client = api
    steps = [{"email": {"template_id": await template(client, "Draft")}}]
    sequence_id = (await client.post("/sequences", json={"name": "D", "trigger": {"type": "manual"}, "steps": steps})).json()["id"]

    paused = await client.post(f"/sequences/{sequence_id}/pause")
    enrolled = await client.post(f"/sequences/{sequence_id}/enrollments", json={"contact_id": await add_contact(runtime)})

    assert paused.status_code == 409
    assert (enrolled.status_code, enrolled.json()["reason"]) == (409, "not_active")


async def test_enrolment_twice_and_unknown_contact(api, runtime: Runtime) -> None:
    app, client = api
    steps = [{"email": {"template_id": await template(client, "Once")}}, {"wait": {"days": 1}}, {"email": {"template_id": await template(client, "Twice")}}]
    sequence_id = (await client.post("/sequences", json={"name": "E", "trigger": {"type": "manual"}, "steps": steps})).json()["id"]
    await client.post(f"/sequences/{sequence_id}/activate")
    contact_id = await add_contact(runtime)

    first = await client.post(f"/sequences/{sequence_id}/enrollments", json={"contact_id": contact_id})
    second = await client.post(f"/sequences/{sequence_id}/enrollments", json={"contact_id": contact_id})
    listed = await client.get(f"/sequences/{sequence_id}/enrollments", params={"state": "active"})
    read = await client.get(f"/enrollments/{first.json()['id']}")

    assert first.status_code == 201
    assert (second.status_code, second.json()["reason"]) == (409, "enrolled")
    assert [item["contact_id"] for item in listed.json()["items"]] == [contact_id]
    assert [step["state"] for step in read.json()["steps"]] == ["scheduled"]


async def test_unsubscribed_contact_cannot_be_enrolled(api, runtime: Runtime) -> None:
    _, client = api
    steps = [{"email": {"template_id": await template(client, "Never")}}]
    sequence_id = (await client.post("/sequences", json={"name": "U", "trigger": {"type": "manual"}, "steps": steps})).json()["id"]
    await client.post(f"/sequences/{sequence_id}/activate")
    contact_id = await add_contact(runtime, consent={"status": "unsubscribed"})

    response = await client.post(f"/sequences/{sequence_id}/enrollments", json={"contact_id": contact_id})

    assert (response.status_code, response.json()["reason"]) == (409, "unsubscribed")


# --- export and erasure ---------------------------------------------------------------------------------


async def test_export_then_erase_keeps_report_counts(api, runtime: Runtime, sink: Sink) -> None:
    _, client = api
    clock.freeze(START)
    steps = [{"id": "hello", "email": {"template_id": await template(client, "Hello")}}]
    sequence_id = (await client.post("/sequences", json={"name": "X", "trigger": {"type": "manual"}, "steps": steps})).json()["id"]
    await client.post(f"/sequences/{sequence_id}/activate")
    erased = await add_contact(runtime, f"erase-{uuid.uuid4().hex[:6]}@example.com", first_name="Eve")
    kept = await add_contact(runtime)
    for contact_id in (erased, kept):
        await client.post(f"/sequences/{sequence_id}/enrollments", json={"contact_id": contact_id})
    await drive(runtime)
    exported = (await client.get(f"/contacts/{erased}/export")).json()
    message_id = exported["messages"][0]["message_id"]
    opened = timeline_event(erased, "email_opened", {"message_id": message_id}, occurred_at=START + timedelta(hours=1))
    await deliver(runtime, "contact.event_recorded", opened)
    before = (await client.get(f"/sequences/{sequence_id}/report")).json()["steps"][0]

    exported = (await client.get(f"/contacts/{erased}/export")).json()
    await deliver(runtime, "contact.erased", {"contact_id": erased})
    await deliver(runtime, "contact.changed", snapshot(erased, "erase-again@example.com"))
    after = (await client.get(f"/sequences/{sequence_id}/report")).json()["steps"][0]
    emptied = (await client.get(f"/contacts/{erased}/export")).json()

    assert exported["facts"]["first_name"] == "Eve"
    assert [step["step_id"] for step in exported["enrolments"][0]["steps"]] == ["hello"]
    assert [event["type"] for event in exported["messages"][0]["events"]] == ["opened"]
    assert (emptied["facts"], emptied["enrolments"], emptied["messages"]) == (None, [], [])
    assert (await client.get(f"/messages/{message_id}")).status_code == 404
    assert {name: after[name] for name in ("sent", "delivered", "unique_opens", "open_rate")} == {
        name: before[name] for name in ("sent", "delivered", "unique_opens", "open_rate")
    }
    assert (after["sent"], after["unique_opens"]) == (2, 1)


async def test_erasure_by_internal_route(api, runtime: Runtime) -> None:
    _, client = api
    contact_id = await add_contact(runtime)

    response = await client.delete(f"/contacts/{contact_id}")

    assert response.json()["deleted"]["facts"] == 1
    assert (await client.get(f"/contacts/{contact_id}/export")).json()["facts"] is None


async def test_step_after_an_erasure_runs(api, runtime: Runtime, sink: Sink) -> None:
    # The erased contact's step run is the newest row, whose id SQLite would hand out again.
    _, client = api
    clock.freeze(START)
    steps = [{"id": "hello", "email": {"template_id": await template(client, "Welcome back")}}]
    sequence_id = (await client.post("/sequences", json={"name": "Y", "trigger": {"type": "manual"}, "steps": steps})).json()["id"]
    await client.post(f"/sequences/{sequence_id}/activate")
    erased = await add_contact(runtime, f"gone-{uuid.uuid4().hex[:6]}@example.com")
    await client.post(f"/sequences/{sequence_id}/enrollments", json={"contact_id": erased})
    await drive(runtime)
    await deliver(runtime, "contact.erased", {"contact_id": erased})

    address = f"next-{uuid.uuid4().hex[:6]}@example.com"
    await client.post(f"/sequences/{sequence_id}/enrollments", json={"contact_id": await add_contact(runtime, address)})
    await drive(runtime)

    assert [str(message["To"]) for message in sink.handler.messages].count(address) == 1
    assert (await client.get(f"/sequences/{sequence_id}/report")).json()["steps"][0]["sent"] == 2


async def test_app_routes_need_internal_token(api) -> None:
    app: FastAPI = api[0]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sequencer") as anonymous:
        response = await anonymous.get("/templates")

    assert response.status_code == 401
