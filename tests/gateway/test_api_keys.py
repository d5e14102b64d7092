"""API keys: hashed at rest, checked in constant time, scoped per area, revocable."""

import httpx
import pytest
from fastapi import FastAPI
from sqlmodel import select

from services.gateway.keys.models import ApiKey
from services.gateway.keys.scopes import grants, validate_scopes
from services.gateway.keys.service import create_key
from tests.support.apps import route_in_process

Apps = tuple[FastAPI, httpx.AsyncClient]


async def _key(app: FastAPI, scopes: list[str]) -> str:
    async with app.state.db.session() as session:
        _, key = await create_key(session, name="test", scopes=scopes)
    return key


async def test_key_is_stored_only_as_hash(gateway_app: Apps) -> None:
    app, _ = gateway_app

    key = await _key(app, ["contacts:read"])

    async with app.state.db.session() as session:
        rows = (await session.exec(select(ApiKey))).all()
    assert all(key not in (row.key_hash, row.prefix, row.id) for row in rows)
    assert any(row.prefix in key for row in rows)


async def test_missing_key_is_401(gateway_app: Apps) -> None:
    _, client = gateway_app

    response = await client.get("/v1/contacts/any", headers={"Authorization": ""})

    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_wrong_key_is_401(gateway_app: Apps) -> None:
    app, client = gateway_app
    key = await _key(app, ["*"])
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")

    response = await client.get("/v1/contacts/any", headers={"Authorization": f"Bearer {forged}"})

    assert response.status_code == 401


async def test_missing_scope_is_403(gateway_app: Apps) -> None:
    app, client = gateway_app
    key = await _key(app, ["contacts:read"])

    response = await client.post(
        "/v1/events", json={"email": "a@example.com", "type": "page_view"}, headers={"Authorization": f"Bearer {key}"}
    )

    assert response.status_code == 403
    assert response.json()["required_scope"] == "events:write"


async def test_export_needs_each_area_scope(gateway_app: Apps) -> None:
    app, client = gateway_app
    contacts_only = await _key(app, ["contacts:read"])
    without_sequences = await _key(app, ["contacts:read", "segments:read", "scoring:read"])

    first = await client.get("/v1/contacts/c1/export", headers={"Authorization": f"Bearer {contacts_only}"})
    second = await client.get("/v1/contacts/c1/export", headers={"Authorization": f"Bearer {without_sequences}"})

    assert first.status_code == 403
    assert first.json()["required_scope"] == "segments:read"
    assert second.status_code == 403
    assert second.json()["required_scope"] == "sequences:read"


async def test_scoped_key_reaches_its_area(gateway_app: Apps, contacts_app: Apps) -> None:
    gateway, client = gateway_app
    contacts, _ = contacts_app
    route_in_process(gateway, "contacts", contacts)
    key = await _key(gateway, ["events:write", "contacts:read"])
    headers = {"Authorization": f"Bearer {key}"}

    accepted = await client.post("/v1/events", json={"email": "scoped@example.com", "type": "page_view"}, headers=headers)
    contact = await client.get(f"/v1/contacts/{accepted.json()['contact_id']}", headers=headers)

    assert accepted.status_code == 202
    assert contact.status_code == 200
    assert contact.json()["email"] == "scoped@example.com"


def test_write_scope_implies_read() -> None:
    assert grants(["contacts:write"], "contacts:read")
    assert not grants(["contacts:read"], "contacts:write")
    assert not grants(["events:write"], "contacts:read")
    assert grants(["*"], "reports:read")


def test_unknown_scope_rejected() -> None:
    with pytest.raises(ValueError, match="unknown scope 'contacts:admin'"):
        validate_scopes(["contacts:admin"])
