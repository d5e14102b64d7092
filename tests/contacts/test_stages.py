"""Lifecycle stages: one transition check for every entry point, the history, definitions and MQL promotion."""

import uuid
from datetime import UTC, datetime

import httpx

from services.contacts.db import ProcessedEvent
from services.contacts.worker import worker_settings
from services.gateway.keys.service import create_key
from services.kit.consumer import EventConsumer
from services.kit.contracts import EventEnvelope
from services.kit.contracts import contacts as topics
from services.kit.contracts import scoring as scoring_topics
from tests.contacts.support import Apps, create_contact, history, move_stage, published, run_import_now, upload, worker_context
from tests.support.apps import route_in_process


async def _contact_at_sql(client: httpx.AsyncClient) -> dict[str, object]:
    contact = await create_contact(client, stage="lead")
    assert (await move_stage(client, contact["id"], "mql")).status_code == 200
    assert (await move_stage(client, contact["id"], "sql")).status_code == 200
    return contact


async def _stage(client: httpx.AsyncClient, contact_id: str) -> str:
    return (await client.get(f"/contacts/{contact_id}")).json()["stage"]  # type: ignore[no-any-return]


# Case 14: a contact at SQL cannot be moved back to MQL by PATCH, import or automation.


async def test_patch_to_lower_stage_is_409_without_history(contacts_app: Apps) -> None:
    _, client = contacts_app
    contact = await _contact_at_sql(client)
    before = await history(client, contact["id"])

    response = await client.patch(f"/contacts/{contact['id']}", json={"stage": "MQL", "first_name": "Changed"})

    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert await _stage(client, contact["id"]) == "sql"
    assert await history(client, contact["id"]) == before
    assert (await client.get(f"/contacts/{contact['id']}")).json()["first_name"] is None


async def test_import_cannot_lower_stage(contacts_app: Apps) -> None:
    app, client = contacts_app
    contact = await _contact_at_sql(client)
    before = await history(client, contact["id"])
    csv = f"email,stage,first_name\n{contact['email']},MQL,Imported\n".encode()

    accepted = await upload(client, csv, {"email": "email", "stage": "stage", "first_name": "first_name"})
    await run_import_now(app, accepted.json()["id"])

    report = (await client.get(f"/imports/{accepted.json()['id']}")).json()
    assert await _stage(client, contact["id"]) == "sql"
    assert await history(client, contact["id"]) == before
    assert [(row["line"], row["reason"], row["field"]) for row in report["failed"]] == [(2, "stage not allowed", "stage")]
    assert report["updated"] == 0


async def test_automation_cannot_lower_stage(contacts_app: Apps) -> None:
    """A sequence's "set stage" action calls the internal stage route without allow_regression."""
    _, client = contacts_app
    contact = await _contact_at_sql(client)
    before = await history(client, contact["id"])

    response = await client.post(f"/contacts/{contact['id']}/stage", json={"stage": "mql", "actor": "sequence:welcome"})

    assert response.status_code == 409
    assert await _stage(client, contact["id"]) == "sql"
    assert await history(client, contact["id"]) == before


async def test_regression_with_reason_is_allowed_once(contacts_app: Apps) -> None:
    app, client = contacts_app
    contact = await _contact_at_sql(client)
    before = await history(client, contact["id"])

    response = await client.post(
        f"/contacts/{contact['id']}/stage", json={"stage": "MQL", "allow_regression": True, "reason": "disqualified"}
    )

    assert response.status_code == 200
    assert await _stage(client, contact["id"]) == "mql"
    after = await history(client, contact["id"])
    assert after[: len(before)] == before
    [entry] = after[len(before) :]
    assert (entry["from"], entry["to"], entry["reason"], entry["actor"]) == ("sql", "mql", "disqualified", "api")
    assert (await published(app, topics.STAGE_CHANGED, contact_id=contact["id"]))[-1]["to_stage"] == "mql"


async def test_case_14_through_gateway(contacts_app: Apps, gateway_app: Apps) -> None:
    contacts, _ = contacts_app
    gateway, client = gateway_app
    route_in_process(gateway, "contacts", contacts)
    async with gateway.state.db.session() as session:
        _, key = await create_key(session, name="case14", scopes=["contacts:write"])
    client.headers["Authorization"] = f"Bearer {key}"
    contact = (await client.post("/v1/contacts", json={"email": f"c14-{uuid.uuid4().hex[:8]}@example.com", "stage": "sql"})).json()

    patched = await client.patch(f"/v1/contacts/{contact['id']}", json={"stage": "MQL"})
    moved = await client.post(f"/v1/contacts/{contact['id']}/stage", json={"stage": "MQL", "allow_regression": True, "reason": "disqualified"})
    entries = (await client.get(f"/v1/contacts/{contact['id']}/stage-history")).json()["items"]

    assert patched.status_code == 409
    assert moved.status_code == 200
    assert [(entry["from"], entry["to"], entry["reason"]) for entry in entries] == [(None, "sql", None), ("sql", "mql", "disqualified")]
    assert entries[-1]["actor"] == "api_key:case14"


# The transition rules through the stage route


async def test_sales_rejection_needs_reason(contacts_app: Apps) -> None:
    _, client = contacts_app
    contact = await create_contact(client, stage="mql")

    without = await move_stage(client, contact["id"], "lead")
    with_reason = await move_stage(client, contact["id"], "lead", reason="no budget this year")

    assert without.status_code == 422
    assert without.json()["errors"][0]["field"] == "reason"
    assert with_reason.status_code == 200
    assert with_reason.json()["kind"] == "sales_rejection"


async def test_same_stage_is_409(contacts_app: Apps) -> None:
    _, client = contacts_app
    contact = await create_contact(client, stage="lead")

    response = await move_stage(client, contact["id"], "lead")

    assert response.status_code == 409


async def test_unknown_stage_is_422(contacts_app: Apps) -> None:
    _, client = contacts_app
    contact = await create_contact(client)

    response = await move_stage(client, contact["id"], "prospect")

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "stage"


async def test_patch_moves_forward_and_records_history(contacts_app: Apps) -> None:
    _, client = contacts_app
    contact = await create_contact(client)

    response = await client.patch(f"/contacts/{contact['id']}", json={"stage": "lead", "actor": "form:webinar"})
    same = await client.patch(f"/contacts/{contact['id']}", json={"stage": "lead"})

    assert (response.status_code, same.status_code) == (200, 200)
    entries = await history(client, contact["id"])
    assert [(entry["from"], entry["to"], entry["actor"]) for entry in entries] == [
        (None, "subscriber", "api"),
        ("subscriber", "lead", "form:webinar"),
    ]
    assert all(entry["at"].endswith("Z") for entry in entries)


# Stage definitions


async def test_definitions_are_versioned(contacts_app: Apps) -> None:
    _, client = contacts_app
    before = {item["stage"]: item for item in (await client.get("/stages")).json()["items"]}
    revision = {
        "title": "Marketing-qualified lead",
        "definition": "Ready for sales follow-up.",
        "entry_criteria": ["Score of at least 60 in the default model"],
        "approved_by": {"marketing": "mia@example.com", "sales": "sam@example.com"},
    }

    response = await client.put("/stages/MQL", json=revision)
    after = {item["stage"]: item for item in (await client.get("/stages")).json()["items"]}

    assert list(before) == ["subscriber", "lead", "mql", "sql", "opportunity", "customer", "disqualified"]
    assert response.status_code == 200
    assert response.json()["version"] == before["mql"]["version"] + 1
    assert after["mql"]["approved_by"] == {"marketing": "mia@example.com", "sales": "sam@example.com"}
    assert after["sql"] == before["sql"]


async def test_definition_of_unknown_stage_is_422(contacts_app: Apps) -> None:
    _, client = contacts_app
    revision = {"title": "X", "definition": "X", "entry_criteria": ["X"], "approved_by": {"marketing": "a", "sales": "b"}}

    response = await client.put("/stages/prospect", json=revision)

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "stage"


# MQL promotion from scoring


def _mql_envelope(contact_id: str, score: float = 72.5) -> EventEnvelope:
    payload = scoring_topics.MqlReached(contact_id=contact_id, model="default", score=score, threshold=60, at=datetime(2024, 5, 1, tzinfo=UTC))
    return EventEnvelope(
        id=uuid.uuid4().hex, topic=scoring_topics.MQL_REACHED, producer="scoring",
        occurred_at=payload.at, payload=payload.model_dump(mode="json"),
    )


def _consumer(app: object) -> EventConsumer:
    handlers = worker_settings(app.state.settings).functions[0].coroutine.__self__.handlers  # type: ignore[attr-defined]
    return EventConsumer(ProcessedEvent, handlers)


async def test_mql_reached_promotes_lead_once(contacts_app: Apps) -> None:
    app, client = contacts_app
    contact = await create_contact(client, stage="lead")
    envelope = _mql_envelope(contact["id"])
    consumer = _consumer(app)

    await consumer.apply(app.state.db, envelope, worker_context(app))
    await consumer.apply(app.state.db, envelope, worker_context(app))
    await consumer.apply(app.state.db, _mql_envelope(contact["id"], score=80), worker_context(app))

    entries = await history(client, contact["id"])
    assert [(entry["from"], entry["to"], entry["actor"]) for entry in entries][1:] == [("lead", "mql", "scoring")]
    assert entries[-1]["reason"] == "score 72.5 reached the MQL threshold 60 of model default"
    assert len(await published(app, topics.STAGE_CHANGED, contact_id=contact["id"], to_stage="mql")) == 1


async def test_mql_reached_never_demotes(contacts_app: Apps) -> None:
    app, client = contacts_app
    contact = await create_contact(client, stage="opportunity")

    await _consumer(app).apply(app.state.db, _mql_envelope(contact["id"]), worker_context(app))

    assert await _stage(client, contact["id"]) == "opportunity"
    assert len(await history(client, contact["id"])) == 1


async def test_mql_reached_does_not_undo_sales_rejection(contacts_app: Apps) -> None:
    app, client = contacts_app
    contact = await create_contact(client)
    consumer = _consumer(app)
    await consumer.apply(app.state.db, _mql_envelope(contact["id"]), worker_context(app))
    await move_stage(client, contact["id"], "lead", reason="student")

    await consumer.apply(app.state.db, _mql_envelope(contact["id"], score=90), worker_context(app))

    assert await _stage(client, contact["id"]) == "lead"


async def test_mql_reached_for_unknown_contact_is_ignored(contacts_app: Apps) -> None:
    app, _ = contacts_app

    outcome = await _consumer(app).apply(app.state.db, _mql_envelope(uuid.uuid4().hex), worker_context(app))

    assert outcome == "applied"


async def test_concurrent_moves_pass_the_check_one_at_a_time(contacts_app: Apps) -> None:
    """Two salespeople accept the same MQL at once: one move is recorded, the other sees it done."""
    import asyncio

    _, client = contacts_app
    contact = await create_contact(client, stage="mql")

    first, second = await asyncio.gather(
        move_stage(client, contact["id"], "sql"),
        move_stage(client, contact["id"], "sql", actor="sales:sam@example.com"),
    )

    assert sorted([first.status_code, second.status_code]) == [200, 409]
    moves = [(entry["from"], entry["to"]) for entry in await history(client, contact["id"])][1:]
    assert moves == [("mql", "sql")]
