"""Idempotency-Key on public POSTs: replay, mismatch, concurrency, scope per key, expiry."""

import asyncio
import uuid
from datetime import timedelta

import httpx
from sqlmodel import select

from services.gateway.idempotency.models import IdempotencyRecord
from services.gateway.idempotency.service import purge_expired
from services.kit import clock
from services.kit.http import ServiceClient
from services.kit.problems import PROBLEM_MEDIA_TYPE

from .conftest import Apps, Gateway, new_key, unique_email


async def timeline_of(gateway: Gateway, contact_id: str) -> list[dict[str, object]]:
    response = await gateway.client.get(f"/v1/contacts/{contact_id}/timeline", headers=gateway.auth)
    assert response.status_code == 200
    return response.json()["items"]  # type: ignore[no-any-return]


async def post_event(gateway: Gateway, body: dict[str, object], key: str, api_key: str | None = None) -> object:
    headers = {"Authorization": f"Bearer {api_key or gateway.key}", "Idempotency-Key": key}
    return await gateway.client.post("/v1/events", json=body, headers=headers)


async def test_same_key_replays_first_response(gateway: Gateway) -> None:
    body = {"email": unique_email(), "type": "page_view"}
    key = str(uuid.uuid4())

    first = await post_event(gateway, body, key)
    second = await post_event(gateway, body, key)

    assert first.status_code == 202  # type: ignore[attr-defined]
    assert second.status_code == 202  # type: ignore[attr-defined]
    assert second.json() == first.json()  # type: ignore[attr-defined]
    assert second.headers["idempotent-replayed"] == "true"  # type: ignore[attr-defined]
    assert "idempotent-replayed" not in first.headers  # type: ignore[attr-defined]
    # The gateway gives each event without an id a new one, so a second run would store a second event.
    assert len(await timeline_of(gateway, first.json()["contact_id"])) == 1  # type: ignore[attr-defined]


async def test_same_key_other_body_is_422(gateway: Gateway) -> None:
    key = str(uuid.uuid4())
    await post_event(gateway, {"email": unique_email(), "type": "page_view"}, key)

    response = await post_event(gateway, {"email": unique_email(), "type": "page_view"}, key)

    assert response.status_code == 422  # type: ignore[attr-defined]
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE  # type: ignore[attr-defined]
    assert response.json()["errors"][0]["field"] == "Idempotency-Key"  # type: ignore[attr-defined]


async def test_concurrent_requests_run_once(gateway: Gateway) -> None:
    email = unique_email()
    body = {"email": email, "type": "page_view"}
    key = str(uuid.uuid4())

    responses = await asyncio.gather(*(post_event(gateway, body, key) for _ in range(6)))

    statuses = sorted(response.status_code for response in responses)  # type: ignore[attr-defined]
    assert set(statuses) <= {202, 409}
    assert 202 in statuses
    refused = [response for response in responses if response.status_code == 409]  # type: ignore[attr-defined]
    assert all(response.headers["retry-after"] == "1" for response in refused)  # type: ignore[attr-defined]
    contact_id = next(response.json()["contact_id"] for response in responses if response.status_code == 202)  # type: ignore[attr-defined]
    assert len(await timeline_of(gateway, contact_id)) == 1


async def test_keys_are_scoped_per_api_key(gateway: Gateway) -> None:
    other_api_key = await new_key(gateway.app)
    key = str(uuid.uuid4())

    first = await post_event(gateway, {"email": unique_email(), "type": "page_view"}, key)
    second = await post_event(gateway, {"email": unique_email(), "type": "page_view"}, key, api_key=other_api_key)

    assert first.status_code == 202  # type: ignore[attr-defined]
    assert second.status_code == 202  # type: ignore[attr-defined]
    assert second.json()["contact_id"] != first.json()["contact_id"]  # type: ignore[attr-defined]


async def test_error_responses_release_the_key(gateway: Gateway) -> None:
    key = str(uuid.uuid4())
    invalid = {"email": unique_email(), "type": "email_bounced", "properties": {"bounce_class": "sideways"}}
    valid = {"email": unique_email(), "type": "page_view"}

    failed = await post_event(gateway, invalid, key)
    retried = await post_event(gateway, valid, key)

    assert failed.status_code == 422  # type: ignore[attr-defined]
    assert retried.status_code == 202  # type: ignore[attr-defined]


async def test_key_expires_after_ttl(gateway: Gateway) -> None:
    key = str(uuid.uuid4())
    first = await post_event(gateway, {"email": unique_email(), "type": "page_view"}, key)

    clock.advance(timedelta(hours=24, seconds=1))
    reused = await post_event(gateway, {"email": unique_email(), "type": "page_view"}, key)

    assert first.status_code == 202  # type: ignore[attr-defined]
    assert reused.status_code == 202  # type: ignore[attr-defined]
    assert "idempotent-replayed" not in reused.headers  # type: ignore[attr-defined]


async def test_expired_records_are_purged(gateway: Gateway) -> None:
    key = str(uuid.uuid4())
    await post_event(gateway, {"email": unique_email(), "type": "page_view"}, key)

    clock.advance(timedelta(hours=25))
    purged = await purge_expired(gateway.app.state.db)

    async with gateway.app.state.db.session() as session:
        left = (await session.exec(select(IdempotencyRecord).where(IdempotencyRecord.idempotency_key == key))).all()
    assert purged >= 1
    assert left == []


async def test_abandoned_request_is_taken_over(gateway: Gateway) -> None:
    key = str(uuid.uuid4())
    body = {"email": unique_email(), "type": "page_view"}
    await post_event(gateway, body, key)
    async with gateway.app.state.db.session() as session:
        record = (await session.exec(select(IdempotencyRecord).where(IdempotencyRecord.idempotency_key == key))).one()
        # As if the process that ran the request died before storing the answer.
        record.state, record.response_status = "in_progress", None
        session.add(record)
        await session.commit()

    blocked = await post_event(gateway, body, key)
    clock.advance(timedelta(seconds=61))
    taken_over = await post_event(gateway, body, key)

    assert blocked.status_code == 409  # type: ignore[attr-defined]
    assert taken_over.status_code == 202  # type: ignore[attr-defined]


async def test_invalid_key_is_422(gateway: Gateway) -> None:
    response = await post_event(gateway, {"email": unique_email(), "type": "page_view"}, "x" * 256)

    assert response.status_code == 422  # type: ignore[attr-defined]
    assert response.json()["errors"][0]["field"] == "Idempotency-Key"  # type: ignore[attr-defined]


async def test_missing_api_key_is_401_not_replayed(gateway: Gateway) -> None:
    response = await gateway.client.post(
        "/v1/events", json={"email": unique_email(), "type": "page_view"}, headers={"Idempotency-Key": "k-1"}
    )

    assert response.status_code == 401


class LosesFirstResponse(httpx.AsyncBaseTransport):
    """Passes requests to the real contacts app, but loses the first response, as a timeout would."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.lost = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if self.lost:
            return response
        self.lost += 1
        await response.aclose()
        raise httpx.ReadTimeout("the response did not arrive in time", request=request)


async def test_retry_after_lost_response_stores_once(gateway: Gateway, contacts_app: Apps) -> None:
    settings = gateway.app.state.settings
    gateway.app.state.clients["contacts"] = ServiceClient(
        "contacts", "http://contacts", internal_token=settings.internal_token,
        transport=LosesFirstResponse(httpx.ASGITransport(app=contacts_app[0])),
    )
    email = unique_email()
    body = {"events": [{"email": email, "type": "page_view"}, {"email": email, "type": "form_submitted"}]}
    headers = {**gateway.auth, "Idempotency-Key": str(uuid.uuid4())}

    lost = await gateway.client.post("/v1/events/batch", json=body, headers=headers)
    retried = await gateway.client.post("/v1/events/batch", json=body, headers=headers)

    assert lost.status_code == 503
    assert retried.status_code == 202
    assert [item["status"] for item in retried.json()["items"]] == ["duplicate", "duplicate"]
    contact_id = retried.json()["items"][0]["contact_id"]
    assert sorted(item["type"] for item in await timeline_of(gateway, contact_id)) == ["form_submitted", "page_view"]
