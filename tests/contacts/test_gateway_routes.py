"""The public /v1 routes of contacts, events, segments, stages and imports, through the real gateway."""

import json
import uuid
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI

from services.gateway.keys.service import create_key
from tests.contacts.support import Apps, run_import_now
from tests.support.apps import route_in_process

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
async def public(contacts_app: Apps, gateway_app: Apps) -> tuple[FastAPI, FastAPI, httpx.AsyncClient]:
    """The gateway routed in-process to the contacts app, with a client that has no key yet."""
    contacts, _ = contacts_app
    gateway, client = gateway_app
    route_in_process(gateway, "contacts", contacts)
    return contacts, gateway, client


async def _key(gateway: FastAPI, *scopes: str) -> dict[str, str]:
    async with gateway.state.db.session() as session:
        _, key = await create_key(session, name="contacts-tests", scopes=list(scopes))
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("POST", "/v1/contacts", "contacts:write"),
        ("GET", "/v1/contacts", "contacts:read"),
        ("PUT", "/v1/attributes/plan", "contacts:write"),
        ("POST", "/v1/events", "events:write"),
        ("POST", "/v1/events/batch", "events:write"),
        ("POST", "/v1/segments", "segments:write"),
        ("GET", "/v1/segments", "segments:read"),
        ("PUT", "/v1/stages/mql", "contacts:write"),
        ("GET", "/v1/imports/x", "contacts:read"),
    ],
)
async def test_each_route_needs_its_scope(public: tuple[FastAPI, FastAPI, httpx.AsyncClient], method: str, path: str, scope: str) -> None:
    _, gateway, client = public
    area = scope.split(":")[0]
    other = "reports:write" if area != "reports" else "contacts:write"

    response = await client.request(method, path, json={}, headers=await _key(gateway, other))

    assert response.status_code == 403
    assert response.json()["required_scope"] == scope


async def test_contact_lifecycle_through_gateway(public: tuple[FastAPI, FastAPI, httpx.AsyncClient]) -> None:
    _, gateway, client = public
    client.headers.update(await _key(gateway, "contacts:write", "events:write"))
    email = f"gw+{uuid.uuid4().hex[:8]}@Example.com"

    created = await client.post("/v1/contacts", json={"email": email, "first_name": "Gia"})
    duplicate = await client.post("/v1/contacts", json={"email": email.upper()})
    upserted = await client.put(f"/v1/contacts/by-email/{email}", json={"last_name": "Ng"})
    patched = await client.patch(f"/v1/contacts/{created.json()['id']}", json={"timezone": "Asia/Tokyo"})
    event = await client.post("/v1/events", json={"email": email, "type": "page_view"})
    timeline = await client.get(f"/v1/contacts/{created.json()['id']}/timeline")
    consent = await client.put(f"/v1/contacts/{created.json()['id']}/consent", json={"status": "unsubscribed"})
    listed = await client.get("/v1/contacts", params={"email": email})
    erased = await client.delete(f"/v1/contacts/{created.json()['id']}")
    after_erasure = await client.get(f"/v1/contacts/{created.json()['id']}")

    assert created.status_code == 201
    assert (duplicate.status_code, duplicate.json()["existing_id"]) == (409, created.json()["id"])
    assert duplicate.headers["content-type"] == "application/problem+json"
    assert (upserted.status_code, upserted.json()["last_name"]) == (200, "Ng")
    assert patched.json()["timezone"] == "Asia/Tokyo"
    assert event.json()["contact_id"] == created.json()["id"]
    assert [item["type"] for item in timeline.json()["items"]] == ["page_view"]
    assert consent.json()["consent"]["status"] == "unsubscribed"
    assert [item["id"] for item in listed.json()["items"]] == [created.json()["id"]]
    assert (erased.status_code, after_erasure.status_code) == (204, 404)


async def test_encoded_slash_stays_in_its_segment(public: tuple[FastAPI, FastAPI, httpx.AsyncClient]) -> None:
    _, gateway, client = public
    writer, reader = await _key(gateway, "contacts:write"), await _key(gateway, "contacts:read")
    created = await client.post("/v1/contacts", json={"email": f"seg{uuid.uuid4().hex[:8]}@example.com"}, headers=writer)

    # The server decodes `%252F` to `%2F`. Passed on as is, the service would decode it again into
    # the export route, which needs scopes that this key lacks.
    export = await client.get(f"/v1/contacts/{created.json()['id']}%252Fexport", headers=reader)

    assert export.status_code == 404


async def test_upsert_of_address_with_slash(public: tuple[FastAPI, FastAPI, httpx.AsyncClient]) -> None:
    _, gateway, client = public
    client.headers.update(await _key(gateway, "contacts:write"))
    email = f"team/{uuid.uuid4().hex[:8]}@example.com"

    created = await client.put(f"/v1/contacts/by-email/{quote(email, safe='')}", json={"first_name": "Ida"})
    updated = await client.put(f"/v1/contacts/by-email/{quote(email, safe='')}", json={"last_name": "Lind"})

    assert created.status_code == 201
    assert created.json()["email"] == email
    assert updated.status_code == 200
    assert updated.json()["id"] == created.json()["id"]


async def test_validation_error_names_field_through_gateway(public: tuple[FastAPI, FastAPI, httpx.AsyncClient]) -> None:
    _, gateway, client = public
    client.headers.update(await _key(gateway, "contacts:write"))

    response = await client.post("/v1/contacts", json={"email": f"v{uuid.uuid4().hex[:6]}@example.com", "attributes": {"undefined_thing": 1}})

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "attributes.undefined_thing"


async def test_segment_through_gateway(public: tuple[FastAPI, FastAPI, httpx.AsyncClient]) -> None:
    _, gateway, client = public
    client.headers.update(await _key(gateway, "contacts:write", "segments:write"))
    tag = f"Gw{uuid.uuid4().hex[:8]}"
    contact = (await client.post("/v1/contacts", json={"email": f"{tag}@example.com", "last_name": tag})).json()

    created = await client.post("/v1/segments", json={"name": "gw", "filter": {"field": "last_name", "op": "eq", "value": tag}})
    members = await client.get(f"/v1/segments/{created.json()['id']}/contacts")
    invalid = await client.post("/v1/segments", json={"name": "bad", "filter": {"any": [{"field": "stage", "op": "gt", "value": "disqualified"}]}})

    assert created.status_code == 201
    assert [item["id"] for item in members.json()["items"]] == [contact["id"]]
    assert invalid.status_code == 422
    assert invalid.json()["errors"][0]["field"] == "filter.any[0].value"


async def test_stage_routes_through_gateway(public: tuple[FastAPI, FastAPI, httpx.AsyncClient]) -> None:
    _, gateway, client = public
    client.headers.update(await _key(gateway, "contacts:write"))
    contact = (await client.post("/v1/contacts", json={"email": f"st{uuid.uuid4().hex[:8]}@example.com", "stage": "mql"})).json()

    stages = await client.get("/v1/stages")
    accepted = await client.post(f"/v1/contacts/{contact['id']}/stage", json={"stage": "sql", "actor": "sales:sam@example.com"})
    history = await client.get(f"/v1/contacts/{contact['id']}/stage-history")

    assert [item["stage"] for item in stages.json()["items"]][:3] == ["subscriber", "lead", "mql"]
    assert accepted.json()["kind"] == "sales_acceptance"
    assert [(entry["from"], entry["to"], entry["actor"]) for entry in history.json()["items"]][-1] == ("mql", "sql", "sales:sam@example.com")


async def test_batch_through_gateway(public: tuple[FastAPI, FastAPI, httpx.AsyncClient]) -> None:
    _, gateway, client = public
    client.headers.update(await _key(gateway, "events:write"))
    events = [{"email": f"b{uuid.uuid4().hex[:8]}@example.com", "type": "page_view"}, {"type": "page_view"}]

    response = await client.post("/v1/events/batch", json={"events": events})

    assert response.status_code == 202
    assert [item["status"] for item in response.json()["items"]] == ["stored", "rejected"]


async def test_bad_events_through_gateway_are_422(public: tuple[FastAPI, FastAPI, httpx.AsyncClient]) -> None:
    _, gateway, client = public
    client.headers.update(await _key(gateway, "events:write"))
    # Within the gateway's own limit of 64 levels for a whole body, but beyond the 32 of properties.
    properties: dict[str, object] = {}
    for _ in range(40):
        properties = {"a": properties}
    year_one = {"email": f"y{uuid.uuid4().hex[:8]}@example.com", "type": "page_view", "occurred_at": "0001-01-01T00:00:00+01:00"}

    deep = await client.post("/v1/events", json={"email": f"d{uuid.uuid4().hex[:8]}@example.com", "type": "page_view", "properties": properties})
    early = await client.post("/v1/events", json=year_one)

    assert deep.status_code == 422, deep.text
    assert [error["field"] for error in deep.json()["errors"]] == ["properties"]
    assert early.status_code == 422, early.text
    assert [error["field"] for error in early.json()["errors"]] == ["occurred_at"]


async def test_batch_reused_id_through_gateway(public: tuple[FastAPI, FastAPI, httpx.AsyncClient]) -> None:
    _, gateway, client = public
    client.headers.update(await _key(gateway, "events:write"))
    event_id = f"dupb-{uuid.uuid4().hex}"
    events = [
        {"id": event_id, "email": f"b1{uuid.uuid4().hex[:8]}@example.com", "type": "page_view"},
        {"id": event_id, "email": f"b2{uuid.uuid4().hex[:8]}@example.com", "type": "email_bounced", "properties": {"bounce_class": "hard"}},
    ]

    response = await client.post("/v1/events/batch", json={"events": events})

    items = response.json()["items"]
    assert response.status_code == 202
    assert [item["status"] for item in items] == ["stored", "rejected"]
    assert [error["field"] for error in items[1]["error"]["errors"]] == ["id"]


async def _upload(client: httpx.AsyncClient, content: bytes, mapping: dict[str, str], **form: str) -> httpx.Response:
    files = {"file": ("people.csv", content, "text/csv")}
    return await client.post("/v1/imports", files=files, data={"mapping": json.dumps(mapping), **form})


async def test_case_04_through_public_api(public: tuple[FastAPI, FastAPI, httpx.AsyncClient]) -> None:
    contacts, gateway, client = public
    client.headers.update(await _key(gateway, "contacts:write"))
    await client.put("/v1/attributes/birthday", json={"type": "date", "label": "Birthday"})
    tag = uuid.uuid4().hex[:8]
    content = (FIXTURES / "case04_bad_rows.csv").read_bytes().replace(b"@example.com", f"-{tag}@example.com".encode())

    accepted = await _upload(client, content, {"email": "email", "first_name": "first_name", "birthday": "birthday"})
    await run_import_now(contacts, accepted.json()["id"])
    report = (await client.get(f"/v1/imports/{accepted.json()['id']}")).json()

    assert accepted.status_code == 202
    assert accepted.headers["location"] == f"/v1/imports/{accepted.json()['id']}"
    assert (report["created"], report["duplicates"], report["duplicate_lines"]) == (3, 1, [7])
    assert [(row["line"], row["reason"]) for row in report["failed"]] == [(3, "invalid email"), (5, "invalid date: birthday")]


async def test_case_06_through_public_api(public: tuple[FastAPI, FastAPI, httpx.AsyncClient]) -> None:
    contacts, gateway, client = public
    client.headers.update(await _key(gateway, "contacts:write", "events:write"))
    email = f"u-{uuid.uuid4().hex[:8]}@example.com"
    contact = (await client.post("/v1/contacts", json={"email": email})).json()
    await client.post("/v1/events", json={"contact_id": contact["id"], "type": "unsubscribed", "occurred_at": "2024-05-01T10:00:00Z"})
    content = (FIXTURES / "case06_reimport.csv").read_bytes().replace(b"u@example.com", email.encode())

    accepted = await _upload(client, content, {"email": "email", "first_name": "first_name", "status": "consent"}, mode="overwrite")
    await run_import_now(contacts, accepted.json()["id"])
    report = (await client.get(f"/v1/imports/{accepted.json()['id']}")).json()
    read = (await client.get(f"/v1/contacts/{contact['id']}")).json()

    assert read["first_name"] == "Una"
    assert (read["consent"]["status"], read["consent"]["source"], read["consent"]["changed_at"]) == (
        "unsubscribed", "unsubscribe_link", "2024-05-01T10:00:00Z",
    )
    assert report["consent_changes_ignored"] == 1


async def test_import_mapping_error_through_gateway(public: tuple[FastAPI, FastAPI, httpx.AsyncClient]) -> None:
    _, gateway, client = public
    client.headers.update(await _key(gateway, "contacts:write"))

    response = await _upload(client, b"Email\nx@example.com\n", {"E-mail": "email"})

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["field"] == "mapping.E-mail"


async def test_openapi_documents_contacts_routes(public: tuple[FastAPI, FastAPI, httpx.AsyncClient]) -> None:
    _, gateway, _ = public
    paths = gateway.openapi()["paths"]

    assert paths["/v1/contacts"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/ContactIn")
    assert "201" in paths["/v1/contacts"]["post"]["responses"]
    assert "multipart/form-data" in paths["/v1/imports"]["post"]["requestBody"]["content"]
    for path in ("/v1/segments/{segment_id}/contacts", "/v1/contacts/{contact_id}/stage-history", "/v1/imports/{import_id}", "/v1/stages"):
        assert "$ref" in json.dumps(paths[path]["get"]["responses"]["200"]), path
