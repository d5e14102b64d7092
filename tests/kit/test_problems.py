"""Every error a service raises is RFC 9457 problem details naming the invalid field."""

import httpx
import pytest
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


class _DriverError(Exception):
    """A driver error carrying a SQLSTATE, as asyncpg's errors do."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"SQLSTATE {sqlstate}")
        self.sqlstate = sqlstate


def _app_raising(sqlstate: str) -> FastAPI:
    from sqlalchemy.exc import DBAPIError

    from services.kit.problems import install_problem_handlers

    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/fail")
    async def fail() -> None:
        raise DBAPIError("SELECT 1", None, _DriverError(sqlstate))

    return app


@pytest.mark.parametrize("sqlstate", ["57P03", "57P01", "08006", "53300"])
async def test_database_not_serving_is_503(sqlstate: str) -> None:
    transport = httpx.ASGITransport(app=_app_raising(sqlstate), raise_app_exceptions=False)

    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        response = await client.get("/fail")

    assert response.status_code == 503
    assert int(response.headers["retry-after"]) > 0


async def test_constraint_violation_stays_500() -> None:
    transport = httpx.ASGITransport(app=_app_raising("23505"), raise_app_exceptions=False)

    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        response = await client.get("/fail")

    assert response.status_code == 500
    assert "retry-after" not in response.headers
