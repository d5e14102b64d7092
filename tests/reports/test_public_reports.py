"""The public report routes: scopes, forwarding, and the dashboard page's headers and files."""

import re
import uuid
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from services.gateway.keys.service import create_key
from tests.reports.dataset import EXPECTED_REACHED, build_funnel
from tests.support.apps import route_in_process

Apps = tuple[FastAPI, httpx.AsyncClient]
STATIC = Path(__file__).parents[2] / "services" / "gateway" / "dashboard" / "static"
REPORTS = ("funnel", "stage-times", "nurture-impact", "sequence-performance", "score-distribution")


async def new_key(app: FastAPI, scopes: list[str]) -> dict[str, str]:
    async with app.state.db.session() as session:
        _, key = await create_key(session, name=f"reports-{uuid.uuid4().hex[:8]}", scopes=scopes, rate_limit=100_000)
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
async def gateway(gateway_app: Apps, contacts_app: Apps, scoring_app: Apps, sequencer_app: Apps) -> Apps:
    app, client = gateway_app
    route_in_process(app, "contacts", contacts_app[0])
    route_in_process(app, "scoring", scoring_app[0])
    route_in_process(app, "sequencer", sequencer_app[0])
    return app, client


async def test_reports_match_contacts_service(gateway: Apps, contacts_app: Apps) -> None:
    app, client = gateway
    funnel = await build_funnel(contacts_app[1])
    headers = await new_key(app, ["reports:read"])

    for name in ("funnel", "stage-times", "nurture-impact"):
        public = await client.get(f"/v1/reports/{name}", params=funnel.window, headers=headers)
        internal = await contacts_app[1].get(f"/reports/{name}", params=funnel.window)

        assert public.status_code == 200, public.text
        without_time = {key: value for key, value in public.json().items() if key != "generated_at"}
        assert without_time == {key: value for key, value in internal.json().items() if key != "generated_at"}
    body = (await client.get("/v1/reports/funnel", params=funnel.window, headers=headers)).json()
    assert {item["stage"]: item["reached"] for item in body["stages"]} == EXPECTED_REACHED


async def test_every_report_needs_reports_scope(gateway: Apps) -> None:
    app, client = gateway
    reader = await new_key(app, ["reports:read"])
    outsider = await new_key(app, ["contacts:read", "sequences:read", "scoring:read"])

    for name in REPORTS:
        allowed = await client.get(f"/v1/reports/{name}", headers=reader)
        rejected = await client.get(f"/v1/reports/{name}", headers=outsider)

        assert allowed.status_code == 200, (name, allowed.text)
        assert rejected.status_code == 403, (name, rejected.text)


async def test_bad_window_names_field(gateway: Apps) -> None:
    app, client = gateway
    headers = await new_key(app, ["reports:read"])

    response = await client.get("/v1/reports/funnel", params={"since": "2030-01-01T00:00:00"}, headers=headers)

    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["errors"][0]["field"] == "since"


async def test_dashboard_forbids_inline_script(gateway: Apps) -> None:
    _, client = gateway

    response = await client.get("/dashboard")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "default-src 'none'" in policy
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(("name", "media_type"), [("dashboard.js", "text/javascript"), ("dashboard.css", "text/css"), ("favicon.svg", "image/svg+xml")])
async def test_dashboard_static_files(gateway: Apps, name: str, media_type: str) -> None:
    _, client = gateway

    response = await client.get(f"/dashboard/static/{name}")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith(media_type)
    assert "content-security-policy" in response.headers


@pytest.mark.parametrize("name", ["index.html", "../router.py", "missing.js"])
async def test_dashboard_serves_only_listed_files(gateway: Apps, name: str) -> None:
    _, client = gateway

    response = await client.get(f"/dashboard/static/{name}")

    assert response.status_code == 404


def test_page_has_no_inline_script_or_remote_url() -> None:
    html = (STATIC / "index.html").read_text()
    script = (STATIC / "dashboard.js").read_text()

    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []
    assert re.search(r"<[^>]+\son[a-z]+\s*=", html) is None
    for text in (html, script, (STATIC / "dashboard.css").read_text()):
        assert re.search(r"https?://(?!www\.w3\.org/2000/svg)", text) is None
    assert "innerHTML" not in script
    assert "insertAdjacentHTML" not in script
    assert "document.write" not in script
