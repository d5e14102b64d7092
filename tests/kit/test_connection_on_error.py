"""An unexpected error's 500 leaves the kept-alive connection usable for the caller's next request."""

import asyncio
from collections.abc import AsyncIterator

import pytest
import uvicorn
from fastapi import FastAPI

from services.cli.supervisor import free_port
from services.kit.app import keep_connection_on_error
from services.kit.problems import install_problem_handlers


def _failing_app() -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/fails")
    async def fails() -> None:
        raise RuntimeError("a bug")

    @app.get("/works")
    async def works() -> dict[str, str]:
        return {"status": "ok"}

    return app


@pytest.fixture
async def server_port() -> AsyncIterator[int]:
    port = free_port()
    config = uvicorn.Config(keep_connection_on_error(_failing_app()), host="127.0.0.1", port=port, log_config=None, lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    yield port
    server.should_exit = True
    await task


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str) -> bytes:
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    await asyncio.wait_for(reader.readexactly(length), timeout=5)
    return head.split(b"\r\n")[0]


async def test_next_request_on_same_connection(server_port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server_port)

    failed = await _get(reader, writer, "/fails")
    # Give the server the time it would take to close the connection after the error.
    await asyncio.sleep(0.2)
    worked = await _get(reader, writer, "/works")
    writer.close()

    assert failed == b"HTTP/1.1 500 Internal Server Error"
    assert worked == b"HTTP/1.1 200 OK"
