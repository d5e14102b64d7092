"""Rescoring every contact from the stored history as a chunked job, and simulating without writing."""

import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import String, cast, delete, func, insert
from sqlmodel import col, select

from services.kit import clock
from services.scoring.db import OutboxMessage
from services.scoring.history.models import ContactFacts, ScoredEvent
from services.scoring.scores.models import ContactScore, LedgerRow
from services.scoring.thresholds.models import ThresholdFiring, ThresholdState
from tests.scoring.service.support import NOW, ScoringHarness, changed, new_id, recorded

CONTACTS = 10_000
PRICING = {"field": "properties.url", "op": "matches", "value": "/pricing"}

RULES: dict[str, Any] = {
    "mql_threshold": 13,
    "rules": [
        {"name": "gold", "kind": "fit", "points": 7, "when": {"field": "attributes.tier", "op": "eq", "value": "gold"}},
        {"name": "pricing", "kind": "engagement", "event": "page_view", "points": 5, "where": PRICING},
        {"name": "visit", "kind": "engagement", "event": "page_view", "points": 1},
    ],
}


class History:
    """Contacts inserted in bulk under one id prefix, removed again after the test."""

    def __init__(self, scoring: ScoringHarness) -> None:
        self.scoring = scoring
        self.prefix = f"r{uuid.uuid4().hex[:8]}"

    def contact(self, index: int) -> str:
        return f"{self.prefix}{index:06d}"

    def expected(self, index: int) -> int:
        """Every contact viewed one page: even ones the pricing page, and every fourth is gold."""
        points = 1
        if index % 2 == 0:
            points += 5
        if index % 4 == 0:
            points += 7
        return points

    async def insert(self, count: int) -> None:
        facts, events = [], []
        for index in range(count):
            contact_id = self.contact(index)
            tier = "gold" if index % 4 == 0 else "basic"
            facts.append({"contact_id": contact_id, "facts": {"email": f"{contact_id}@example.com", "attributes": {"tier": tier}},
                          "stage": "lead", "updated_at": NOW, "stages_reached": ["lead"], "revision": 0})
            url = "/pricing" if index % 2 == 0 else "/blog"
            events.append({"id": f"{contact_id}-view", "contact_id": contact_id, "type": "page_view",
                           "occurred_at": NOW - timedelta(minutes=index % 600), "properties": {"url": url}})
        async with self.scoring.app.state.db.session() as session:
            for start in range(0, count, 2000):
                await session.exec(insert(ContactFacts), params=facts[start:start + 2000])  # type: ignore[call-overload]
                await session.exec(insert(ScoredEvent), params=events[start:start + 2000])  # type: ignore[call-overload]
            await session.commit()

    async def totals(self, model: str) -> tuple[int, float]:
        """Return how many of these contacts have a score under `model`, and the sum of their totals."""
        async with self.scoring.app.state.db.session() as session:
            query = select(func.count(), func.sum(ContactScore.total)).where(
                ContactScore.model == model, col(ContactScore.contact_id).startswith(self.prefix)
            )
            count, total = (await session.exec(query)).one()
        return int(count), float(total or 0)

    async def remove(self) -> None:
        """Delete the contacts and the events published about them, which the worker wrote unrelayed."""
        async with self.scoring.app.state.db.session() as session:
            for table in (ScoredEvent, ContactScore, LedgerRow, ThresholdState, ThresholdFiring, ContactFacts):
                column = col(table.contact_id)  # type: ignore[attr-defined]
                await session.exec(delete(table).where(column.startswith(self.prefix)))  # type: ignore[call-overload]
            mentions = cast(OutboxMessage.envelope, String).contains(self.prefix)
            await session.exec(delete(OutboxMessage).where(mentions))  # type: ignore[call-overload]
            await session.commit()


@pytest.fixture
async def history(scoring: ScoringHarness) -> AsyncIterator[History]:
    inserted = History(scoring)
    yield inserted
    await inserted.remove()


async def test_rescore_of_10000_contacts_reports_progress(scoring: ScoringHarness, history: History) -> None:
    clock.freeze(NOW)
    await history.insert(CONTACTS)
    model = str((await scoring.put_model(RULES))["name"])
    assert await history.totals(model) == (0, 0)

    started = time.perf_counter()
    response = await scoring.client.post(f"/scoring/models/{model}/rescore")
    assert response.status_code == 202
    job = response.json()
    assert (job["state"], job["done"], job["version"]) == ("queued", 0, 1)
    assert job["total"] >= CONTACTS
    seen = await scoring.finish_jobs(job["id"])
    elapsed = time.perf_counter() - started

    finished = await scoring.job(job["id"])
    assert (finished["state"], finished["progress"]) == ("done", 1.0)
    assert finished["done"] == finished["total"] >= CONTACTS
    assert len({done for done in seen if 0 < done < finished["total"]}) >= 3, seen
    assert seen == sorted(seen)
    expected_sum = sum(history.expected(index) for index in range(CONTACTS))
    assert await history.totals(model) == (CONTACTS, expected_sum)
    print(f"rescored {finished['done']} contacts in {elapsed:.1f} s")

    gold = await scoring.model_score(history.contact(0), model)
    assert gold["total"] == 13
    assert {(row["rule"], row["source"], row["version"]) for row in gold["ledger"]} == {
        ("gold", "rescore", 1), ("pricing", "rescore", 1), ("visit", "rescore", 1),
    }


async def test_rescore_applies_new_version_only_when_asked(scoring: ScoringHarness, history: History) -> None:
    clock.freeze(NOW)
    await history.insert(4)
    model = str((await scoring.put_model(RULES))["name"])
    first = (await scoring.client.post(f"/scoring/models/{model}/rescore")).json()
    await scoring.finish_jobs(first["id"])
    assert (await scoring.job(first["id"]))["state"] == "done"

    doubled = {**RULES, "rules": [{**rule, "points": rule["points"] * 2} for rule in RULES["rules"]]}
    await scoring.put_model(doubled, name=model)
    before = await history.totals(model)
    second = (await scoring.client.post(f"/scoring/models/{model}/rescore")).json()
    again = (await scoring.client.post(f"/scoring/models/{model}/rescore")).json()
    await scoring.finish_jobs(second["id"])

    assert before == (4, 13 + 1 + 6 + 1)
    assert again["id"] == second["id"]
    assert await history.totals(model) == (4, 2 * (13 + 1 + 6 + 1))
    score = await scoring.model_score(history.contact(0), model)
    assert (score["version"], score["active_version"]) == (2, 2)
    assert {row["version"] for row in score["ledger"]} == {2}


async def test_rescore_keeps_events_earned_live(scoring: ScoringHarness, history: History) -> None:
    clock.freeze(NOW)
    await history.insert(1)
    model = str((await scoring.put_model(RULES))["name"])
    await scoring.deliver(recorded(history.contact(0), "page_view", at=NOW - timedelta(days=1), properties={"url": "/pricing"}))
    live = (await scoring.model_score(history.contact(0), model))["total"]

    job = (await scoring.client.post(f"/scoring/models/{model}/rescore")).json()
    await scoring.finish_jobs(job["id"])

    assert live == 13
    assert (await scoring.model_score(history.contact(0), model))["total"] == 13 + 6


async def test_rescore_of_unknown_model_is_404(scoring: ScoringHarness) -> None:
    response = await scoring.client.post(f"/scoring/models/missing-{uuid.uuid4().hex[:8]}/rescore")

    assert response.status_code == 404


async def test_simulation_writes_nothing(scoring: ScoringHarness, history: History) -> None:
    clock.freeze(NOW)
    await history.insert(40)
    model = str((await scoring.put_model(RULES))["name"])

    response = await scoring.client.post(f"/scoring/models/{model}/simulate", json={**RULES, "sample_size": 5})

    assert response.status_code == 200
    body = response.json()
    assert body["contacts"] >= 40
    assert await history.totals(model) == (0, 0)
    crossing = [contact for contact in body["would_cross"]["sample"] if contact.startswith(history.prefix)]
    assert len(body["would_cross"]["sample"]) <= 5
    assert all(history.expected(int(contact[len(history.prefix):])) >= 13 for contact in crossing)
    assert body["would_cross"]["count"] >= 10
    assert body["newly_crossing"]["count"] == body["would_cross"]["count"]


async def test_simulation_distribution_of_known_sample(scoring: ScoringHarness, history: History) -> None:
    clock.freeze(NOW)
    await history.insert(8)
    model = str((await scoring.put_model(RULES))["name"])
    # Only the inserted contacts score under this candidate, because they alone are "tier: gold" or "basic".
    candidate = {
        "mql_threshold": 7,
        "rules": [
            {"name": "gold", "kind": "fit", "points": 7, "when": {"field": "attributes.tier", "op": "eq", "value": "gold"}},
            {"name": "basic", "kind": "fit", "points": 1, "when": {"field": "attributes.tier", "op": "eq", "value": "basic"}},
        ],
    }

    body = (await scoring.client.post(f"/scoring/models/{model}/simulate", json=candidate)).json()

    ours = [contact for contact in body["would_cross"]["sample"] if contact.startswith(history.prefix)]
    assert ours == [history.contact(0), history.contact(4)]
    distribution = body["distribution"]
    assert distribution["count"] == body["contacts"]
    assert distribution["max"] == 7
    assert sum(item["count"] for item in distribution["histogram"]) == body["contacts"]
    assert set(distribution["quantiles"]) == {"p10", "p25", "p50", "p75", "p90", "p99"}


async def test_invalid_candidate_is_422(scoring: ScoringHarness) -> None:
    response = await scoring.client.post(
        "/scoring/models/default/simulate", json={"mql_threshold": 5, "rules": [{"name": "x", "kind": "fit", "points": 1}]}
    )

    assert response.status_code == 422
    assert ("x", "when") in {(error["rule"], error["field"]) for error in response.json()["errors"]}


def crafted_rule_set(event_type: str, pattern: str) -> dict[str, Any]:
    where = {"field": "properties.url", "op": "matches", "value": pattern}
    return {"mql_threshold": 5, "rules": [{"name": "crafted", "kind": "engagement", "event": event_type, "points": 5, "where": where}]}


async def test_simulation_of_backtracking_pattern_finishes(scoring: ScoringHarness) -> None:
    # Python's backtracking `re` needs exponential time for this pattern on this URL, and it holds
    # the GIL while it runs, which stalls the whole service.
    event_type = f"visit_{uuid.uuid4().hex[:8]}"
    contact = new_id()
    await scoring.deliver(changed(contact))
    await scoring.deliver(recorded(contact, event_type, properties={"url": "a" * 4000 + "b"}))

    candidate = crafted_rule_set(event_type, "(a|aa)*$")
    response = await scoring.client.post("/scoring/models/default/simulate", json={**candidate, "sample_size": 500})

    assert response.status_code == 200, response.text
    # The pattern matches the empty string at the end of the URL, so the contact scores 5.
    assert response.json()["would_cross"]["sample"] == [contact]


async def test_simulation_rejects_lookahead_pattern(scoring: ScoringHarness) -> None:
    candidate = crafted_rule_set("page_view", "/(?=pricing)")

    response = await scoring.client.post("/scoring/models/default/simulate", json=candidate)

    assert response.status_code == 422
    errors = response.json()["errors"]
    assert [(error["rule"], error["field"]) for error in errors] == [("crafted", "where.value")]
    assert "Patterns use RE2 syntax" in errors[0]["message"]
