"""Fixtures of the sequencer's service tests: isolated database, runtime, SMTP sink and app."""

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from services.kit.db import Database
from services.kit.http import INTERNAL_TOKEN_HEADER
from services.sequencer.app import create_app
from services.sequencer.enrolments.runtime import Runtime, beat, build_runtime
from services.sequencer.sequences.models import Sequence
from services.sequencer.settings import SequencerSettings
from tests.sequencer.support import (
    Sink,
    sequencer_settings,
    start_sink,
)
from tests.support.environment import TestEnvironment, create_database, drop_database, isolated_database_url
from tests.support.threads import in_thread


@dataclass
class Isolated:
    database_url: str
    namespace: str

    def settings(self, **overrides: object) -> SequencerSettings:
        return sequencer_settings(self.database_url, self.namespace, **overrides)


@pytest.fixture(scope="session")
def isolated(environment: TestEnvironment) -> Iterator[Isolated]:
    """A sequencer database and queue namespace that no platform process uses."""
    url = isolated_database_url(environment, "sequencer", "sequencer_tests")
    in_thread(lambda: create_database("sequencer", url))
    yield Isolated(url, f"{environment.namespace}-seqtests")
    in_thread(lambda: drop_database(url))


@pytest.fixture
def sink() -> Iterator[Sink]:
    running = start_sink()
    yield running
    running.controller.stop()


@pytest.fixture
async def runtime(isolated: Isolated, sink: Sink) -> AsyncIterator[Runtime]:
    """A worker's step runtime on the isolated database, sending to this test's sink, without Redis."""
    settings = isolated.settings(smtp_port=sink.port, smtp_retry_base_s=60, smtp_retry_max_s=600)
    db = Database(settings.database_url)
    running = build_runtime(settings, db=db)
    await beat(running)
    yield running
    await running.close()
    await db.dispose()


@pytest.fixture(autouse=True)
async def pause_sequences_afterwards(isolated: Isolated) -> AsyncIterator[None]:
    """Pause every sequence a test activated, so later tests' sweeps and triggers leave them alone."""
    yield
    db = Database(isolated.database_url)
    async with db.session() as session:
        await session.exec(update(Sequence).where(Sequence.status == "active").values(status="paused"))  # type: ignore[call-overload]
        await session.commit()
    await db.dispose()


@pytest.fixture
async def api(isolated: Isolated) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The sequencer app with its lifespan on the isolated database, and an internal client."""
    app = create_app(isolated.settings())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        headers = {INTERNAL_TOKEN_HEADER: app.state.settings.internal_token}
        async with httpx.AsyncClient(transport=transport, base_url="http://sequencer", headers=headers) as client:
            yield app, client


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
