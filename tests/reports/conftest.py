"""Fixtures of the report tests."""

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from tests.support.apps import running_app


@pytest.fixture
async def contacts_app() -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The contacts app, whose outbox relay is stopped before the app's own shutdown."""
    async with running_app("contacts") as running:
        yield running
        await stop_relay(running[0])


async def stop_relay(app: FastAPI) -> None:
    """Cancel the app's outbox relay task until it has really stopped.

    NOTE: on Python 3.11, `asyncio.wait_for` swallows a cancellation that arrives just as the event
    it waits on is set, and the relay loop then runs on, so the app's shutdown would wait forever.
    Cancelling again until the task is done works around it until the relay loop is changed.
    """
    outbox = app.state.outbox
    for task in asyncio.all_tasks():
        frame = getattr(task.get_coro(), "cr_frame", None)
        if frame is None or frame.f_locals.get("self") is not outbox:
            continue
        for _ in range(500):
            if task.done():
                break
            task.cancel()
            await asyncio.sleep(0.01)
