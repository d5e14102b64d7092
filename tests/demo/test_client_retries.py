"""The demo's API client sends a call again when the gateway closed a pooled connection under it."""

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from services.cli.demo.client import DemoClient


class FlakyServer:
    """An HTTP server on loopback that closes the connection of the first `drops` requests, then returns 200."""

    def __init__(self, drops: int) -> None:
        self.drops = drops
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0)
        body = await reader.readexactly(length) if length else b""
        self.requests.append(head + body)
        if len(self.requests) <= self.drops:
            # What a server's keep-alive timeout does to a request that arrives as it closes.
            writer.close()
            return
        answer = json.dumps({"ok": True}).encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(answer), answer))
        await writer.drain()
        writer.close()


@pytest.fixture
async def flaky() -> AsyncIterator[FlakyServer]:
    server = FlakyServer(drops=2)
    server.server = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    yield server
    server.server.close()
    await server.server.wait_closed()


async def test_dropped_get_is_sent_again(flaky: FlakyServer) -> None:
    async with DemoClient(flaky.url, "key") as client:
        body = await client.get("/v1/contacts")

    assert body == {"ok": True}
    assert len(flaky.requests) == 3


async def test_post_repeats_its_idempotency_key(flaky: FlakyServer) -> None:
    async with DemoClient(flaky.url, "key") as client:
        await client.post("/v1/events/batch", {"events": []})

    keys = [
        line.split(b":", 1)[1].strip()
        for request in flaky.requests
        for line in request.split(b"\r\n")
        if line.lower().startswith(b"idempotency-key:")
    ]
    assert len(keys) == 3
    assert len(set(keys)) == 1
