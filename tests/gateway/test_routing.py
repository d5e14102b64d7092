"""Forwarding to the services: timeouts, retries, outages, and problems for every error."""

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from fastapi import FastAPI

from services.cli.supervisor import free_port
from services.kit.http import ServiceClient
from services.kit.problems import PROBLEM_MEDIA_TYPE, Unavailable

from .conftest import Apps, Gateway, new_key, unique_email

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def tcp_server(handler: Handler) -> AsyncIterator[tuple[str, list[int]]]:
    """Run a raw TCP server on loopback; yield its URL and a list counting its connections."""
    connections: list[int] = []

    async def counted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        await handler(reader, writer)

    server = await asyncio.start_server(counted, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", connections
    finally:
        server.close()
        await server.wait_closed()


async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(1024)
    writer.close()


async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    # Read until the client gives up and closes the connection, without ever answering.
    while await reader.read(1024):
        pass
    writer.close()


def use_contacts_at(app: FastAPI, url: str, *, timeout_s: float = 2.0) -> None:
    settings = app.state.settings
    app.state.clients["contacts"] = ServiceClient("contacts", url, internal_token=settings.internal_token, timeout_s=timeout_s)


def assert_problem(response: object, status: int) -> dict[str, object]:
    assert response.status_code == status  # type: ignore[attr-defined]
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE  # type: ignore[attr-defined]
    body: dict[str, object] = response.json()  # type: ignore[attr-defined]
    assert body["status"] == status
    assert body["title"]
    assert body["type"]
    return body


async def test_downed_service_is_503_with_retry_after(gateway_app: Apps) -> None:
    app, client = gateway_app
    use_contacts_at(app, f"http://127.0.0.1:{free_port()}")
    headers = {"Authorization": f"Bearer {await new_key(app)}"}

    posted = await client.post("/v1/events", json={"email": unique_email(), "type": "page_view"}, headers=headers)
    read = await client.get("/v1/contacts/c1", headers=headers)

    assert_problem(posted, 503)
    assert posted.headers["retry-after"] == "5"
    assert posted.json()["service"] == "contacts"
    assert_problem(read, 503)
    assert read.headers["retry-after"] == "5"


async def test_slow_service_times_out_as_503(gateway_app: Apps) -> None:
    app, client = gateway_app
    headers = {"Authorization": f"Bearer {await new_key(app)}"}

    async with tcp_server(never_answer) as (url, connections):
        use_contacts_at(app, url, timeout_s=0.3)
        started = asyncio.get_running_loop().time()
        response = await client.get("/v1/contacts/c1", headers=headers)
        elapsed = asyncio.get_running_loop().time() - started

    assert_problem(response, 503)
    assert elapsed < 10.0  # the 0.3 s timeout fired: a hang would run to the test timeout
    assert len(connections) == 1


async def test_retries_only_idempotent_calls() -> None:
    async with tcp_server(hang_up) as (url, connections):
        client = ServiceClient("contacts", url, internal_token="token", timeout_s=2.0)
        with pytest.raises(Unavailable):
            await client.send("GET", "/contacts/c1")
        after_get = len(connections)
        with pytest.raises(Unavailable):
            await client.send("POST", "/events", json={})
        await client.aclose()

    assert after_get == 3
    assert len(connections) - after_get == 1


async def test_gateway_post_is_sent_once(gateway_app: Apps) -> None:
    app, client = gateway_app
    headers = {"Authorization": f"Bearer {await new_key(app)}"}

    async with tcp_server(hang_up) as (url, connections):
        use_contacts_at(app, url)
        response = await client.post("/v1/events", json={"email": unique_email(), "type": "page_view"}, headers=headers)

    assert_problem(response, 503)
    assert len(connections) == 1


async def test_downstream_validation_names_field(gateway: Gateway) -> None:
    response = await gateway.client.post(
        "/v1/events",
        json={"email": unique_email(), "type": "email_bounced", "properties": {"bounce_class": "sideways"}},
        headers=gateway.auth,
    )

    body = assert_problem(response, 422)
    assert [error["field"] for error in body["errors"]] == ["properties.bounce_class"]  # type: ignore[union-attr]
    # The path the client called, not the service's own path behind the gateway.
    assert body["instance"] == "/v1/events"


async def test_unknown_route_is_404_problem(gateway_app: Apps) -> None:
    _, client = gateway_app

    response = await client.get("/v1/no-such-thing")

    assert_problem(response, 404)


async def test_wrong_method_is_405_problem(gateway_app: Apps) -> None:
    _, client = gateway_app

    response = await client.delete("/v1/events")

    assert_problem(response, 405)
    assert response.headers["allow"] == "POST"


async def test_malformed_json_names_body(gateway_app: Apps) -> None:
    app, client = gateway_app
    headers = {"Authorization": f"Bearer {await new_key(app)}", "Content-Type": "application/json"}

    response = await client.post("/v1/events", content=b'{"type": "page_view",', headers=headers)

    body = assert_problem(response, 422)
    errors = body["errors"]
    assert isinstance(errors, list)
    assert errors[0]["field"] == "body"
    assert errors[0]["type"] == "json_invalid"
    assert "malformed JSON" in errors[0]["message"]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b'{"type": "page_view", "properties": {"n": NaN}}', "NaN is not a JSON number"),
        (b'{"type": "page_view", "properties": {"n": -Infinity}}', "-Infinity is not a JSON number"),
        (b'{"type": "page_view", "properties": {"n": 1e400}}', "out of the range of a number"),
        (b'{"type": "page_view", "properties": {"n": ' + b"9" * 5000 + b"}}", "too many digits"),
        (b'{"type": "page_view", "properties": {"s": "\\ud800"}}', "unpaired surrogate"),
        (b'{"type": "page_view", "properties": {"\\udfff": 1}}', "unpaired surrogate"),
        (b'{"type": "page_view", "properties": {"s": "caf\xe9"}}', "not valid UTF-8"),
        (b'{"type": "page_view", "properties": ' + b'{"a": ' * 100 + b"1" + b"}" * 101, "deeper than 64 levels"),
        (b'{"type": "page_view", "properties": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "deeper than 64 levels"),
    ],
    ids=["nan", "infinity", "overflow", "digits", "surrogate-value", "surrogate-key", "latin-1", "deep", "very-deep"],
)
async def test_non_standard_json_names_body(gateway_app: Apps, content: bytes, reason: str) -> None:
    app, client = gateway_app
    headers = {"Authorization": f"Bearer {await new_key(app)}", "Content-Type": "application/json"}

    response = await client.post("/v1/events", content=content, headers=headers)

    body = assert_problem(response, 422)
    errors = body["errors"]
    assert isinstance(errors, list)
    assert errors[0]["field"] == "body"
    assert reason in errors[0]["message"]


async def test_paired_surrogate_escape_is_accepted(gateway: Gateway) -> None:
    email = unique_email()
    content = json.dumps({"email": email, "type": "page_view", "properties": {"emoji": "\U0001F600"}}).encode()

    response = await gateway.client.post("/v1/events", content=content, headers={**gateway.auth, "Content-Type": "application/json"})

    assert response.status_code == 202, response.text


async def test_wrong_body_shape_names_body(gateway_app: Apps) -> None:
    app, client = gateway_app
    headers = {"Authorization": f"Bearer {await new_key(app)}"}

    response = await client.post("/v1/events", json=["not", "an", "object"], headers=headers)

    body = assert_problem(response, 422)
    assert body["errors"][0]["field"] == "body"  # type: ignore[index]


async def test_nul_character_is_rejected_by_field(gateway: Gateway) -> None:
    body = {"email": unique_email(), "type": "page_view", "properties": {"tags": ["ok", "bad\u0000"]}}

    in_body = await gateway.client.post("/v1/events", json=body, headers=gateway.auth)
    in_path = await gateway.client.get("/v1/contacts/a%00b", headers=gateway.auth)

    assert assert_problem(in_body, 422)["errors"][0]["field"] == "properties.tags.1"  # type: ignore[index]
    assert assert_problem(in_path, 422)["errors"][0]["field"] == "contact_id"  # type: ignore[index]
