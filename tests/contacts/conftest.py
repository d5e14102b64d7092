"""Fixtures of the contacts tests."""

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlmodel import func, select

from services.contacts.db import OutboxMessage
from tests.support.apps import running_app


@pytest.fixture
async def contacts_app() -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The contacts app, stopped only once its outbox relay is idle.

    NOTE: on Python 3.11, `asyncio.wait_for` swallows a cancellation that arrives while the event it
    waits on is already set, so the kit's relay loop never stops when the test's last commit has
    just woken it. Waiting until the relay has nothing left to send avoids that race until the
    loop is changed.
    """
    async with running_app("contacts") as running:
        yield running
        await wait_for_idle_relay(running[0])


async def wait_for_idle_relay(app: FastAPI, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        async with app.state.db.session() as session:
            query = select(func.count()).select_from(OutboxMessage).where(OutboxMessage.state == "pending")
            pending = (await session.exec(query)).one()
        if pending == 0 and not app.state.outbox._wake.is_set():
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.05)
