"""Fixtures of the contacts tests."""

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from tests.support.apps import running_app


@pytest.fixture
async def contacts_app() -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The contacts app; its outbox relay is stopped before the app's own shutdown."""
    async with running_app("contacts") as running:
        yield running
        await stop_relay(running[0])


async def stop_relay(app: FastAPI, timeout_s: float = 10.0) -> None:
    """Cancel the app's outbox relay task until it has really ended.

    NOTE: the kit's relay loop can swallow one cancellation (on Python 3.11 `asyncio.wait_for`
    returns normally when cancelled just after the awaited event was set), after which it runs
    forever and the app's shutdown waits forever. Contacts tests commit right before shutdown, so
    they hit it often. Cancelling again until the task is done ends it either way.
    """
    relays = [task for task in asyncio.all_tasks() if _is_relay_of(task, app)]
    for _ in range(int(timeout_s / 0.02)):
        pending = [task for task in relays if not task.done()]
        if not pending:
            return
        for task in pending:
            task.cancel()
        await asyncio.sleep(0.02)


def _is_relay_of(task: asyncio.Task[object], app: FastAPI) -> bool:
    coroutine = task.get_coro()
    frame = getattr(coroutine, "cr_frame", None)
    return getattr(coroutine, "__qualname__", "") == "Outbox.run" and frame is not None and frame.f_locals.get("self") is app.state.outbox
