import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from services.kit.outbox import Outbox
from services.scoring import app as scoring_app_module
from services.scoring import worker as scoring_worker_module
from tests.scoring.service.support import ScoringHarness
from tests.support.apps import running_app
from tests.support.environment import TestEnvironment as Environment, create_environment, destroy_environment
from tests.support.threads import in_thread


@pytest.fixture(scope="session")
def scoring_environment(environment: Environment) -> Iterator[Environment]:
    """A scoring database and queue namespace for these tests alone.

    The in-process apps of other tests relay their events to the session's scoring queue, and
    `drain_queue` would otherwise apply that whole backlog before a test's own jobs.
    """
    created = in_thread(lambda: create_environment(environment.root / "scoring-tests", parent=environment))
    yield created
    in_thread(lambda: destroy_environment(created))


@pytest.fixture(autouse=True)
def own_scoring_database(monkeypatch: pytest.MonkeyPatch, scoring_environment: Environment) -> None:
    """Point the scoring app, `drain_queue` and worker processes at the scoring tests' own database."""
    monkeypatch.setenv("SCORING_DATABASE_URL", scoring_environment.database_urls["scoring"])
    monkeypatch.setenv("NURTURE_NAMESPACE", scoring_environment.namespace)


class QuietOutbox(Outbox):
    """Publishes like the real outbox, in the caller's transaction, but never relays to Redis.

    These tests read what was published from the outbox itself, and the relay has its own tests.
    Relaying the thousands of events of a rescore would only slow them down.
    """

    async def run(self, *_args: Any, **_kwargs: Any) -> None:
        await asyncio.Event().wait()


@pytest.fixture
async def scoring(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ScoringHarness]:
    """The real scoring app in process with its consumer; the scoring worker of `drain_queue` also stays quiet.

    The models a test creates are archived after it, so later tests do not score against them.
    """
    monkeypatch.setattr(scoring_app_module, "Outbox", QuietOutbox)
    monkeypatch.setattr(scoring_worker_module, "Outbox", QuietOutbox)
    async with running_app("scoring") as (app, client):
        harness = ScoringHarness(app, client)
        yield harness
        await harness.archive_models()
        await harness.forget_published()
