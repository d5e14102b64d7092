"""Rate limits per API key and the request body size limit."""

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

from services.cli.supervisor import free_port
from services.kit import clock
from services.kit.problems import PROBLEM_MEDIA_TYPE
from tests.support.apps import running_app

from .conftest import Apps, Gateway, new_key, unique_email

# Ten seconds into a one-minute window, so a test has 50 s before the window turns.
WINDOW_START = datetime(2031, 1, 1, 12, 0, 0, tzinfo=UTC)


async def read_contact(gateway: Gateway, key: str) -> object:
    return await gateway.client.get(f"/v1/contacts/{uuid.uuid4().hex}", headers={"Authorization": f"Bearer {key}"})


async def test_responses_carry_rate_limit_headers(gateway: Gateway) -> None:
    clock.freeze(WINDOW_START + timedelta(seconds=10))
    key = await new_key(gateway.app, rate_limit=3)

    response = await read_contact(gateway, key)

    assert response.status_code == 404  # type: ignore[attr-defined]
    assert response.headers["ratelimit-limit"] == "3"  # type: ignore[attr-defined]
    assert response.headers["ratelimit-remaining"] == "2"  # type: ignore[attr-defined]
    assert response.headers["ratelimit-reset"] == "50"  # type: ignore[attr-defined]


async def test_over_limit_is_429(gateway: Gateway) -> None:
    clock.freeze(WINDOW_START + timedelta(seconds=10))
    key = await new_key(gateway.app, rate_limit=3)

    statuses = [(await read_contact(gateway, key)).status_code for _ in range(3)]  # type: ignore[attr-defined]
    refused = await read_contact(gateway, key)

    assert statuses == [404, 404, 404]
    assert refused.status_code == 429  # type: ignore[attr-defined]
    assert refused.headers["content-type"] == PROBLEM_MEDIA_TYPE  # type: ignore[attr-defined]
    assert refused.headers["retry-after"] == "50"  # type: ignore[attr-defined]
    assert refused.headers["ratelimit-remaining"] == "0"  # type: ignore[attr-defined]
    assert refused.json()["limit"] == 3  # type: ignore[attr-defined]


async def test_window_turns_with_the_clock(gateway: Gateway) -> None:
    clock.freeze(WINDOW_START + timedelta(seconds=10))
    key = await new_key(gateway.app, rate_limit=1)
    await read_contact(gateway, key)
    refused = await read_contact(gateway, key)

    clock.advance(timedelta(seconds=60))
    allowed = await read_contact(gateway, key)

    assert refused.status_code == 429  # type: ignore[attr-defined]
    assert allowed.status_code == 404  # type: ignore[attr-defined]


async def test_limits_count_per_key(gateway: Gateway) -> None:
    clock.freeze(WINDOW_START + timedelta(seconds=10))
    first, second = await new_key(gateway.app, rate_limit=1), await new_key(gateway.app, rate_limit=1)
    await read_contact(gateway, first)

    assert (await read_contact(gateway, first)).status_code == 429  # type: ignore[attr-defined]
    assert (await read_contact(gateway, second)).status_code == 404  # type: ignore[attr-defined]


async def test_unlimited_key_has_no_headers(gateway: Gateway) -> None:
    key = await new_key(gateway.app, rate_limit=0)

    responses = [await read_contact(gateway, key) for _ in range(5)]

    assert {response.status_code for response in responses} == {404}  # type: ignore[attr-defined]
    assert "ratelimit-limit" not in responses[-1].headers  # type: ignore[attr-defined]


async def test_default_limit_comes_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    clock.freeze(WINDOW_START + timedelta(seconds=10))
    monkeypatch.setenv("GATEWAY_RATE_LIMIT_REQUESTS", "2")
    async with running_app("gateway") as (app, client):
        headers = {"Authorization": f"Bearer {await new_key(app)}"}
        statuses = [(await client.get("/v1/no-such-route-but-authenticated", headers=headers)).status_code]
        for _ in range(3):
            response = await client.post("/v1/events", json={"type": "page_view"}, headers=headers)
            statuses.append(response.status_code)

    # The unknown route needs no key; the two validation errors count, the third request is over.
    assert statuses == [404, 422, 422, 429]


async def test_redis_outage_lets_requests_pass(gateway: Gateway) -> None:
    key = await new_key(gateway.app, rate_limit=1)
    limiter = gateway.app.state.rate_limiter
    working = limiter.redis
    limiter.redis = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    try:
        responses = [await read_contact(gateway, key) for _ in range(3)]
    finally:
        await limiter.redis.aclose()
        limiter.redis = working

    assert [response.status_code for response in responses] == [404, 404, 404]  # type: ignore[attr-defined]


def event_body(size: int) -> bytes:
    padding = "x" * max(0, size - 60)
    return f'{{"email": "{unique_email()}", "type": "page_view", "properties": {{"p": "{padding}"}}}}'.encode()


async def chunks(body: bytes, size: int = 256) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


async def test_declared_length_over_limit_is_413(gateway: Gateway) -> None:
    gateway.app.state.settings.max_body_bytes = 1000

    response = await gateway.client.post(
        "/v1/events", content=event_body(2000), headers={**gateway.auth, "Content-Type": "application/json"}
    )

    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    assert response.json()["max_bytes"] == 1000


async def test_streamed_body_over_limit_is_413(gateway: Gateway) -> None:
    gateway.app.state.settings.max_body_bytes = 1000

    response = await gateway.client.post(
        "/v1/events", content=chunks(event_body(2000)), headers={**gateway.auth, "Content-Type": "application/json"}
    )

    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert response.json()["max_bytes"] == 1000


async def test_understated_length_is_413(gateway: Gateway) -> None:
    gateway.app.state.settings.max_body_bytes = 1000
    headers = {**gateway.auth, "Content-Type": "application/json", "Content-Length": "100"}

    response = await gateway.client.post("/v1/events", content=chunks(event_body(2000)), headers=headers)

    assert response.status_code == 413


async def test_body_under_limit_passes(gateway: Gateway) -> None:
    gateway.app.state.settings.max_body_bytes = 1000

    response = await gateway.client.post(
        "/v1/events", content=chunks(event_body(900)), headers={**gateway.auth, "Content-Type": "application/json"}
    )

    assert response.status_code == 202


async def test_webhooks_have_their_own_limit(gateway_app: Apps) -> None:
    app, client = gateway_app
    app.state.settings.max_body_bytes = 1000
    app.state.settings.webhook_max_body_bytes = 3000

    within = await client.post("/v1/webhooks/sendgrid", content=b"[" + b" " * 2000 + b"]")
    over = await client.post("/v1/webhooks/sendgrid", content=chunks(b"[" + b" " * 4000 + b"]"))

    assert within.status_code != 413
    assert over.status_code == 413
    assert over.json()["max_bytes"] == 3000
