import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func
from sqlmodel import select

from services.scoring.db import OutboxMessage
from tests.scoring.service.support import ScoringHarness


@pytest.fixture
async def scoring(scoring_app: tuple[FastAPI, httpx.AsyncClient]) -> AsyncIterator[ScoringHarness]:
    """The scoring app with a consumer; the models a test creates are archived after it, so later tests skip them."""
    harness = ScoringHarness(*scoring_app)
    yield harness
    await harness.archive_models()
    await _relay_settled(harness.app)


async def _relay_settled(app: FastAPI) -> None:
    # NOTE: with redis 5.3 and arq 0.26, a cancellation that lands while the outbox relay is inside
    # an enqueue can be lost, and the app's shutdown then waits for the relay forever. Waiting
    # until the relay has nothing pending makes the shutdown find it idle, away from Redis.
    for _ in range(100):
        async with app.state.db.session() as session:
            query = select(func.count()).select_from(OutboxMessage).where(OutboxMessage.state == "pending")
            if (await session.exec(query)).one() == 0:
                break
        await asyncio.sleep(0.05)
