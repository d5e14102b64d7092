"""Fixtures shared by the whole suite: the session's environment, in-process apps, the platform."""

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from tests.support.apps import RunningPlatform, running_app, start_platform
from tests.support.environment import TestEnvironment, create_environment, destroy_environment
from tests.support.threads import in_thread


@pytest.fixture(scope="session", autouse=True)
def environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestEnvironment]:
    """Databases (migrated) and Redis for this session, exported as the services' settings."""
    root: Path = tmp_path_factory.mktemp("nurture")
    environment = in_thread(lambda: create_environment(root))
    environment.apply()
    yield environment
    in_thread(lambda: destroy_environment(environment))


@pytest.fixture(autouse=True)
def wall_clock(environment: TestEnvironment) -> Iterator[None]:
    """Start every test on the wall clock, whatever the previous test did to the platform clock."""
    environment.clock_file.unlink(missing_ok=True)
    yield
    environment.clock_file.unlink(missing_ok=True)


@pytest.fixture
async def contacts_app() -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with running_app("contacts") as running:
        yield running


@pytest.fixture
async def scoring_app() -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with running_app("scoring") as running:
        yield running


@pytest.fixture
async def sequencer_app() -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with running_app("sequencer") as running:
        yield running


@pytest.fixture
async def gateway_app() -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with running_app("gateway") as running:
        yield running


@pytest.fixture(scope="session")
def platform(environment: TestEnvironment) -> Iterator[RunningPlatform]:
    """All four services and their workers as real processes, shared by the tests that need them.

    They run on databases and a queue namespace of their own, so what the in-process tests leave
    in the session's outboxes and queues never holds up a platform test.
    """
    own = in_thread(lambda: create_environment(environment.root / "platform-environment", parent=environment))
    running = start_platform(own)
    yield running
    running.platform.stop()
    in_thread(lambda: destroy_environment(own))
