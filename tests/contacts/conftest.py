"""Fixtures of the contacts tests."""

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from tests.support.apps import running_app


@pytest.fixture
async def contacts_app() -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The contacts app, stopped only once its outbox relay is idle.

    NOTE: on Python 3.11, `asyncio.wait_for` swallows a cancellation that arrives while the event it
    waits on is already set, so the kit's relay loop never stops when a test's last request has just
    woken it. Letting the relay finish its pass first avoids that race until the loop is changed.
    """
    async with running_app("contacts") as running:
        yield running
        await asyncio.sleep(0.1)
