"""The public /v1/scoring routes of the gateway: scopes, forwarding, and the contact's score."""

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.gateway.keys.service import create_key
from services.kit import clock
from tests.scoring.service.support import NOW, ScoringHarness, new_id, recorded, unique_name
from tests.support.apps import route_in_process

Apps = tuple[FastAPI, httpx.AsyncClient]

RULES: dict[str, Any] = {
    "mql_threshold": 10,
    "rules": [{"name": "click", "kind": "engagement", "event": "email_clicked", "points": 4}],
}


@pytest.fixture
async def gateway(gateway_app: Apps, scoring: ScoringHarness) -> AsyncIterator[httpx.AsyncClient]:
    app, client = gateway_app
    route_in_process(app, "scoring", scoring.app)
    yield client


async def _key(gateway_app: Apps, *scopes: str) -> dict[str, str]:
    async with gateway_app[0].state.db.session() as session:
        _, key = await create_key(session, name="scoring-tests", scopes=list(scopes))
    return {"Authorization": f"Bearer {key}"}


async def test_model_saved_and_read_through_gateway(gateway: httpx.AsyncClient, gateway_app: Apps, scoring: ScoringHarness) -> None:
    auth = await _key(gateway_app, "scoring:write")
    name = unique_name("public")
    scoring.models.append(name)

    saved = await gateway.put(f"/v1/scoring/models/{name}", json=RULES, headers=auth)
    read = await gateway.get(f"/v1/scoring/models/{name}", headers=auth)

    assert saved.status_code == 201
    assert read.status_code == 200
    assert read.json()["rule_set"] == RULES


async def test_invalid_rule_set_problem_passes_through(gateway: httpx.AsyncClient, gateway_app: Apps) -> None:
    auth = await _key(gateway_app, "scoring:write")
    document = {"mql_threshold": 10, "rules": [{"name": "click", "kind": "engagement", "event": "email_clicked", "pionts": 4}]}

    response = await gateway.put(f"/v1/scoring/models/{unique_name('public')}", json=document, headers=auth)

    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    fields = {(error["rule"], error["field"]) for error in response.json()["errors"]}
    assert ("click", "pionts") in fields
    assert ("click", "points") in fields


async def test_read_scope_cannot_write(gateway: httpx.AsyncClient, gateway_app: Apps) -> None:
    auth = await _key(gateway_app, "scoring:read")

    put = await gateway.put(f"/v1/scoring/models/{unique_name('public')}", json=RULES, headers=auth)
    rescore = await gateway.post("/v1/scoring/models/default/rescore", headers=auth)
    listed = await gateway.get("/v1/scoring/models", headers=auth)

    assert (put.status_code, rescore.status_code, listed.status_code) == (403, 403, 200)


async def test_other_area_scope_is_403(gateway: httpx.AsyncClient, gateway_app: Apps) -> None:
    auth = await _key(gateway_app, "contacts:write")

    response = await gateway.get("/v1/scoring/models", headers=auth)

    assert response.status_code == 403


async def test_threshold_and_contact_score_through_gateway(
    gateway: httpx.AsyncClient, gateway_app: Apps, scoring: ScoringHarness
) -> None:
    clock.freeze(NOW)
    auth = await _key(gateway_app, "scoring:write")
    model = str((await scoring.put_model(RULES))["name"])
    threshold = unique_name("public")
    saved = await gateway.put(
        f"/v1/scoring/thresholds/{threshold}", json={"model": model, "min_score": 8, "action": "notify_sales"}, headers=auth
    )
    contact = new_id()
    await scoring.deliver(recorded(contact, "email_clicked"), recorded(contact, "email_clicked"))

    firings = await gateway.get(f"/v1/scoring/thresholds/{threshold}/firings", headers=auth)
    score = await gateway.get(f"/v1/contacts/{contact}/score", headers=auth)

    assert saved.status_code == 201
    assert [item["contact_id"] for item in firings.json()["items"]] == [contact]
    body = score.json()
    assert body["models"][model]["total"] == 8
    assert body["models"][model]["mql"] is False
    assert [row["rule"] for row in body["models"][model]["ledger"]] == ["click", "click"]


async def test_gateway_rejects_bad_threshold_body(gateway: httpx.AsyncClient, gateway_app: Apps) -> None:
    auth = await _key(gateway_app, "scoring:write")

    response = await gateway.put(
        f"/v1/scoring/thresholds/{unique_name('public')}", json={"model": "default", "min_score": -1, "action": "notify_sales"},
        headers=auth,
    )

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "min_score"


async def test_openapi_documents_scoring_routes(gateway_app: Apps) -> None:
    spec = (await gateway_app[1].get("/openapi.json")).json()

    put = spec["paths"]["/v1/scoring/models/{model}"]["put"]
    assert "requestBody" in put
    assert set(put["responses"]) >= {"200", "201", "422"}
    assert "/v1/scoring/thresholds/{name}" in spec["paths"]
    assert "/v1/scoring/jobs/{job_id}" in spec["paths"]
