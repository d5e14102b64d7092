"""Fixtures of the report tests."""

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from tests.support.apps import running_app


@pytest.fixture
async def contacts_app() -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The contacts app, stopped only once its outbox relay has taken the last commit's wake-up.

    NOTE: on Python 3.11, `asyncio.wait_for` swallows a cancellation that arrives while the event it
    waits on is already set, so the relay loop would not stop right after a commit woke it.
    """
    async with running_app("contacts") as running:
        yield running
        await relay_idle(running[0])


async def relay_idle(app: FastAPI) -> None:
    """Wait until the outbox relay has no wake-up pending and has finished the pass it was in."""
    for _ in range(1000):
        await asyncio.sleep(0.05)
        if not app.state.outbox._wake.is_set():
            await asyncio.sleep(0.1)
            if not app.state.outbox._wake.is_set():
                return
