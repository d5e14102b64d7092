"""Two scoring worker processes fed one contact's events in any order reach the score one worker would.

The events go straight onto the scoring queue as `consume_event` jobs, as the contacts service's
outbox relay would send them, in shuffled order. One worker is killed mid-batch and restarted,
and every event is then delivered a second time, as the outbox sweep does for jobs it lost track of.
"""

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func
from sqlmodel import col, select

from services.kit import clock
from services.kit.contracts import EventEnvelope
from services.kit.outbox import CONSUME_EVENT_JOB
from services.kit.queue import create_queue_pool, job_id, queue_name
from services.scoring.db import ProcessedEvent
from services.scoring.history.service import is_machine_event
from services.scoring.rules import load_rule_set, replay
from services.scoring.scores.models import LedgerRow
from tests.scoring.service.support import NOW, ScoringHarness, changed, new_id, recorded

EVENTS = 1000

RULES: dict[str, Any] = {
    "mql_threshold": 100_000,
    "decay": {"type": "half_life", "half_life_days": 30},
    "rules": [
        {"name": "gold", "kind": "fit", "points": 7, "when": {"field": "attributes.tier", "op": "eq", "value": "gold"}},
        {"name": "article", "kind": "engagement", "event": "article_read", "points": 1},
        {"name": "download", "kind": "engagement", "event": "content_downloaded", "points": 5,
         "cap": {"max_points": 50, "period": "week"}, "decay": {"type": "none"}},
        {"name": "webinar", "kind": "pattern", "points": 20, "within_days": 7, "decay": {"type": "none"},
         "steps": [{"event": "webinar_registered"}, {"event": "webinar_attended"}]},
    ],
}


def _events(contact_id: str) -> list[EventEnvelope]:
    """Build 1,000 events over 20 days: reads (ten by a link scanner), downloads and webinars."""
    generator = random.Random(20250303)
    envelopes = []
    for index in range(EVENTS):
        at = NOW - timedelta(minutes=generator.randrange(20 * 24 * 60))
        if index < 10:
            envelopes.append(recorded(contact_id, "webinar_registered" if index % 2 == 0 else "webinar_attended", at=at))
        elif index < 100:
            envelopes.append(recorded(contact_id, "content_downloaded", at=at))
        else:
            properties = {"bot": True} if index % 89 == 0 else {"path": f"/articles/{index}"}
            envelopes.append(recorded(contact_id, "article_read", at=at, properties=properties))
    return envelopes


def _expected(envelopes: list[EventEnvelope]) -> tuple[float, int]:
    """Score the same history in time order with the rules library: the total and the ledger size (fit row included)."""
    documents = [item.payload["event"] for item in envelopes]
    human = [document for document in documents if not is_machine_event(document["properties"])]
    with load_rule_set(RULES) as compiled:
        result = replay(compiled, contact={"attributes": {"tier": "gold"}}, events=human, now=NOW)
    return result.score.total, len(result.entries)


class Workers:
    """Scoring worker processes started with the test session's settings."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str) -> None:
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - the process writes to it until it stops
        command = [sys.executable, "-m", "services.cli", "worker", "scoring"]
        self.processes[name] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))

    def kill(self, name: str) -> None:
        self.processes[name].send_signal(signal.SIGKILL)
        self.processes[name].wait(timeout=10)

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    started = Workers(tmp_path)
    yield started
    started.stop_all()


async def _enqueue(envelopes: list[EventEnvelope], *, attempt: str) -> None:
    namespace = os.environ["NURTURE_NAMESPACE"]
    redis = await create_queue_pool(os.environ["REDIS_URL"])
    try:
        for item in envelopes:
            await redis.enqueue_job(
                CONSUME_EVENT_JOB,
                item.model_dump(mode="json"),
                _job_id=job_id(namespace, "evt", item.id, "scoring", attempt),
                _queue_name=queue_name(namespace, "scoring"),
            )
    finally:
        await redis.aclose()


async def _processed(scoring: ScoringHarness, ids: list[str]) -> int:
    async with scoring.app.state.db.session() as session:
        query = select(func.count()).select_from(ProcessedEvent).where(col(ProcessedEvent.event_id).in_(ids))
        return int((await session.exec(query)).one())


async def _wait_processed(scoring: ScoringHarness, ids: list[str], count: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while (done := await _processed(scoring, ids)) < count:
        assert time.monotonic() < deadline, f"only {done} of {count} events processed in {timeout_s} s"
        await asyncio.sleep(0.2)


# Two fresh worker processes, a kill and a full second delivery take about a minute on an idle
# two-core machine, and several times that when the machine is busy.
@pytest.mark.timeout(900)
async def test_two_workers_reach_the_exact_score(
    scoring: ScoringHarness, workers: Workers, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A queue of its own: the killed worker's jobs stay marked in progress for minutes, and any
    # later drain of the scoring queue would wait for them.
    monkeypatch.setenv("NURTURE_NAMESPACE", f"{os.environ['NURTURE_NAMESPACE']}-concurrent")
    clock.freeze(NOW)
    model = str((await scoring.put_model(RULES))["name"])
    contact = new_id()
    await scoring.deliver(changed(contact, attributes={"tier": "gold"}))
    envelopes = _events(contact)
    expected_total, expected_rows = _expected(envelopes)
    ids = [item.id for item in envelopes]
    random.Random(7).shuffle(envelopes)

    await _enqueue(envelopes, attempt="first")
    started = time.monotonic()
    workers.start("a")
    workers.start("b")
    await _wait_processed(scoring, ids, 250, timeout_s=300)
    workers.kill("a")
    workers.start("a-again")
    await _enqueue(list(reversed(envelopes)), attempt="redelivery")
    await _wait_processed(scoring, ids, EVENTS, timeout_s=540)
    elapsed = time.monotonic() - started

    score = await scoring.model_score(contact, model)
    assert score["total"] == expected_total
    assert score["fit"] == 7
    assert len(score["ledger"]) == expected_rows
    async with scoring.app.state.db.session() as session:
        query = select(func.count()).select_from(LedgerRow).where(LedgerRow.contact_id == contact, LedgerRow.model == model)
        assert (await session.exec(query)).one() == expected_rows
    assert (await scoring.score(contact))["events_held"] == EVENTS
    print(f"{EVENTS} events for one contact through two workers (one killed) in {elapsed:.1f} s")
