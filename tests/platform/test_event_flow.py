"""The platform as real processes: an event travels through every service, and survives a kill."""

import signal
import uuid

import httpx

from tests.support.apps import RunningPlatform
from tests.support.waiting import eventually


PRICING_RULES = {
    "mql_threshold": 100,
    "rules": [
        {"name": "pricing-visit", "kind": "engagement", "event": "page_view", "points": 15,
         "where": {"field": "properties.url", "op": "matches", "value": "/pricing"}},
    ],
}


async def _install_model(client: httpx.AsyncClient) -> str:
    model = f"flow-{uuid.uuid4().hex[:8]}"
    response = await client.put(f"/v1/scoring/models/{model}", json=PRICING_RULES)
    assert response.status_code in (200, 201), response.text
    return model


async def _post_event(client: httpx.AsyncClient, email: str) -> dict[str, str]:
    response = await client.post("/v1/events", json={"email": email, "type": "page_view", "properties": {"url": "/pricing"}})
    assert response.status_code == 202, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_event_reaches_contacts_scoring_and_back(platform: RunningPlatform) -> None:
    async with platform.client() as client:
        model = await _install_model(client)
        accepted = await _post_event(client, f"flow-{uuid.uuid4().hex[:8]}@Example.COM")
        contact_id = accepted["contact_id"]

        timeline = (await client.get(f"/v1/contacts/{contact_id}/timeline")).json()
        assert [event["id"] for event in timeline["items"]] == [accepted["id"]]

        async def scored_by_scoring() -> bool:
            score = (await client.get(f"/v1/contacts/{contact_id}/score")).json()
            return score["models"].get(model, {}).get("total") == 15

        await eventually(scored_by_scoring, timeout_s=60)

        async def score_copied_to_contacts() -> bool:
            contact = (await client.get(f"/v1/contacts/{contact_id}")).json()
            return contact["scores"].get(model, {}).get("total") == 15

        await eventually(score_copied_to_contacts, timeout_s=60)


async def test_same_event_id_stored_once(platform: RunningPlatform) -> None:
    event = {"id": f"evt-{uuid.uuid4().hex}", "email": f"dup-{uuid.uuid4().hex[:8]}@example.com", "type": "form_submitted"}
    async with platform.client() as client:
        first = await client.post("/v1/events", json=event)
        second = await client.post("/v1/events", json=event)

        assert first.json()["status"] == "stored"
        assert second.json()["status"] == "duplicate"
        timeline = (await client.get(f"/v1/contacts/{first.json()['contact_id']}/timeline")).json()
        assert len(timeline["items"]) == 1


async def test_killed_worker_restarts_and_event_is_not_lost(platform: RunningPlatform) -> None:
    async with platform.client() as client:
        model = await _install_model(client)
        old_pid = platform.platform.signal("scoring-worker", signal.SIGKILL)
        accepted = await _post_event(client, f"kill-{uuid.uuid4().hex[:8]}@example.com")

        async def worker_restarted() -> bool:
            process = platform.platform.child("scoring-worker").process
            return process is not None and process.pid != old_pid and process.poll() is None

        await eventually(worker_restarted)

        async def scored_once() -> bool:
            score = (await client.get(f"/v1/contacts/{accepted['contact_id']}/score")).json()
            return score["events_held"] == 1 and score["models"].get(model, {}).get("total") == 15

        await eventually(scored_once, timeout_s=60)


async def test_killed_service_restarts_and_answers_again(platform: RunningPlatform) -> None:
    async with platform.client() as client:
        accepted = await _post_event(client, f"svc-{uuid.uuid4().hex[:8]}@example.com")
        platform.platform.signal("contacts", signal.SIGKILL)

        async def contact_readable() -> bool:
            response = await client.get(f"/v1/contacts/{accepted['contact_id']}")
            return response.status_code == 200

        await eventually(contact_readable, timeout_s=30)
        timeline = (await client.get(f"/v1/contacts/{accepted['contact_id']}/timeline")).json()
        assert [event["id"] for event in timeline["items"]] == [accepted["id"]]


async def test_stopped_service_gives_503_and_others_still_serve(platform: RunningPlatform) -> None:
    async with platform.client() as client:
        accepted = await _post_event(client, f"down-{uuid.uuid4().hex[:8]}@example.com")
        platform.platform.stop_child("scoring")
        try:
            down = await client.get(f"/v1/contacts/{accepted['contact_id']}/score")
            up = await client.get(f"/v1/contacts/{accepted['contact_id']}")
        finally:
            platform.platform.start_child("scoring")

        assert down.status_code == 503
        assert down.headers["content-type"] == "application/problem+json"
        assert int(down.headers["retry-after"]) > 0
        assert up.status_code == 200
