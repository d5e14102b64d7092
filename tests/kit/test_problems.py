"""Every error a service raises is RFC 9457 problem details naming the invalid field."""

import httpx
from fastapi import FastAPI

from services.kit.http import INTERNAL_TOKEN_HEADER

ContactsApp = tuple[FastAPI, httpx.AsyncClient]


async def test_validation_error_names_field(contacts_app: ContactsApp) -> None:
    _, client = contacts_app

    response = await client.post("/contacts", json={"email": "not-an-address"})

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 422
    assert [error["field"] for error in body["errors"]] == ["email"]


async def test_missing_body_field_is_named(contacts_app: ContactsApp) -> None:
    _, client = contacts_app

    response = await client.post("/contacts", json={"first_name": "Ann"})

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "email"


async def test_not_found_is_problem(contacts_app: ContactsApp) -> None:
    _, client = contacts_app

    response = await client.get("/contacts/missing")

    assert response.status_code == 404
    assert response.json()["title"] == "Not found"
    assert response.json()["contact_id"] == "missing"


async def test_unknown_route_is_problem(contacts_app: ContactsApp) -> None:
    _, client = contacts_app

    response = await client.get("/no/such/route")

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


async def test_internal_routes_need_token(contacts_app: ContactsApp) -> None:
    app, client = contacts_app

    response = await client.get("/contacts/x", headers={INTERNAL_TOKEN_HEADER: "wrong"})

    assert response.status_code == 401
    assert response.json()["type"].endswith("/unauthorized")


async def test_conflict_names_existing_contact(contacts_app: ContactsApp) -> None:
    _, client = contacts_app
    created = await client.post("/contacts", json={"email": "Conflict.Case@Example.COM"})

    duplicate = await client.post("/contacts", json={"email": " conflict.case@example.com "})

    assert created.status_code == 201
    assert duplicate.status_code == 409
    assert duplicate.json()["existing_id"] == created.json()["id"]
