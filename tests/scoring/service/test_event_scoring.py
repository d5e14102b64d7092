"""Events and contact changes scored through the service: every rule kind, the ledger, idempotency."""

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from services.kit import clock
from services.kit.contracts import scoring as scoring_topics
from services.kit.erasure import erased_key
from services.scoring.db import ProcessedEvent
from services.scoring.history.models import ContactFacts, ErasedContact, ScoredEvent
from services.scoring.scores.models import ContactScore, LedgerRow
from tests.scoring.service.support import (
    NOW,
    ScoringHarness,
    changed,
    erased,
    new_id,
    recorded,
    stage_changed,
)

PRICING = {"field": "properties.url", "op": "matches", "value": "/pricing"}

RULES: dict[str, Any] = {
    "mql_threshold": 1000,
    "rules": [
        {"name": "vp-title", "kind": "fit", "points": 10, "description": "VPs decide",
         "when": {"field": "attributes.job_title", "op": "contains", "value": "VP"}},
        {"name": "mid-size", "kind": "fit", "points": 7, "when": {"field": "company.size", "op": "between", "value": [50, 500]}},
        {"name": "competitor", "kind": "fit", "points": -100, "when": {"field": "email_domain", "op": "eq", "value": "rival.example"}},
        {"name": "pricing-visit", "kind": "engagement", "event": "page_view", "points": 15, "where": PRICING,
         "cap": {"max_points": 40}},
        {"name": "download", "kind": "engagement", "event": "content_downloaded", "points": 8,
         "cap": {"max_points": 16, "period": "week"}},
        {"name": "big-company-visit", "kind": "engagement", "event": "page_view", "points": 4,
         "contact_when": {"field": "company.size", "op": "gte", "value": 1000}},
        {"name": "click", "kind": "engagement", "event": "email_clicked", "points": 3},
        {"name": "hard-bounce", "kind": "engagement", "event": "email_bounced", "points": -15,
         "where": {"field": "properties.bounce_type", "op": "eq", "value": "hard"}},
        {"name": "click-then-pricing", "kind": "pattern", "points": 20, "within_days": 7,
         "steps": [{"event": "email_clicked"}, {"event": "page_view", "where": PRICING}]},
    ],
}


async def _model(scoring: ScoringHarness) -> str:
    return str((await scoring.put_model(RULES))["name"])


def _rows(score: dict[str, Any], rule: str) -> list[dict[str, Any]]:
    return [row for row in score["ledger"] if row["rule"] == rule]


async def test_engagement_rule_scores_matching_event(scoring: ScoringHarness) -> None:
    clock.freeze(NOW)
    model = await _model(scoring)
    contact = new_id()

    await scoring.deliver(recorded(contact, "page_view", properties={"url": "https://acme.example/pricing"}))
    await scoring.deliver(recorded(contact, "page_view", properties={"url": "https://acme.example/blog"}))

    score = await scoring.model_score(contact, model)
    assert (score["total"], score["engagement"], score["fit"]) == (15, 15, 0)
    assert [(row["rule"], row["points"], row["reason"]) for row in score["ledger"]] == [("pricing-visit", 15, "matched")]


async def test_cap_limits_points_and_explains_why(scoring: ScoringHarness) -> None:
    clock.freeze(NOW)
    model = await _model(scoring)
    contact = new_id()

    for minute in range(4):
        await scoring.deliver(recorded(contact, "page_view", at=NOW + timedelta(minutes=minute), properties={"url": "/pricing"}))

    rows = _rows(await scoring.model_score(contact, model), "pricing-visit")
    assert [(row["points"], row["reason"], row["rule_points"]) for row in rows] == [
        (15, "matched", 15), (15, "matched", 15), (10, "capped", 15), (0, "capped", 15),
    ]


async def test_weekly_cap_restarts_next_week(scoring: ScoringHarness) -> None:
    clock.freeze(NOW + timedelta(days=14))
    model = await _model(scoring)
    contact = new_id()

    for day in (0, 1, 2, 7):
        await scoring.deliver(recorded(contact, "content_downloaded", at=NOW + timedelta(days=day)))

    rows = _rows(await scoring.model_score(contact, model), "download")
    assert [row["points"] for row in rows] == [8, 8, 0, 8]


async def test_fit_rules_follow_contact_changes(scoring: ScoringHarness) -> None:
    clock.freeze(NOW)
    model = await _model(scoring)
    contact = new_id()

    await scoring.deliver(changed(contact, attributes={"job_title": "VP Sales"}, company={"size": 120}))
    first = await scoring.model_score(contact, model)
    await scoring.deliver(changed(contact, attributes={"job_title": "Engineer"}, company={"size": 120}))
    second = await scoring.model_score(contact, model)

    assert (first["fit"], first["total"]) == (17, 17)
    assert (second["fit"], second["total"]) == (7, 7)
    assert [(row["rule"], row["points"], row["reason"]) for row in _rows(second, "vp-title")] == [
        ("vp-title", 10, "fit_matched"), ("vp-title", -10, "fit_unmatched"),
    ]
    assert _rows(second, "vp-title")[0]["description"] == "VPs decide"


async def test_negative_fit_rule_from_email_domain(scoring: ScoringHarness) -> None:
    clock.freeze(NOW)
    model = await _model(scoring)
    contact = new_id()

    await scoring.deliver(changed(contact, email="spy@Rival.example"))

    assert (await scoring.model_score(contact, model))["total"] == -100


async def test_negative_engagement_rule(scoring: ScoringHarness) -> None:
    clock.freeze(NOW)
    model = await _model(scoring)
    contact = new_id()

    await scoring.deliver(recorded(contact, "email_clicked"))
    await scoring.deliver(recorded(contact, "email_bounced", properties={"bounce_type": "hard"}))
    await scoring.deliver(recorded(contact, "email_bounced", properties={"bounce_type": "soft"}))

    assert (await scoring.model_score(contact, model))["total"] == 3 - 15


async def test_contact_condition_on_engagement_rule(scoring: ScoringHarness) -> None:
    clock.freeze(NOW)
    model = await _model(scoring)
    small, large = new_id(), new_id()
    await scoring.deliver(changed(small, company={"size": 10}), changed(large, company={"size": 5000}))

    await scoring.deliver(recorded(small, "page_view", properties={"url": "/docs"}))
    await scoring.deliver(recorded(large, "page_view", properties={"url": "/docs"}))

    assert model not in (await scoring.score(small))["models"]
    assert (await scoring.model_score(large, model))["total"] == 4


async def test_pattern_rule_scores_in_either_arrival_order(scoring: ScoringHarness) -> None:
    clock.freeze(NOW + timedelta(days=3))
    model = await _model(scoring)
    in_order, reversed_order = new_id(), new_id()
    click_id, visit_id = new_id(), new_id()

    await scoring.deliver(recorded(in_order, "email_clicked", at=NOW))
    await scoring.deliver(recorded(in_order, "page_view", at=NOW + timedelta(days=2), properties={"url": "/pricing"}))
    await scoring.deliver(
        recorded(reversed_order, "page_view", at=NOW + timedelta(days=2), properties={"url": "/pricing"}, event_id=visit_id)
    )
    await scoring.deliver(recorded(reversed_order, "email_clicked", at=NOW, event_id=click_id))

    for contact in (in_order, reversed_order):
        score = await scoring.model_score(contact, model)
        assert score["total"] == 15 + 3 + 20
        assert len(_rows(score, "click-then-pricing")) == 1
    pattern_row = _rows(await scoring.model_score(reversed_order, model), "click-then-pricing")[0]
    assert (pattern_row["event_id"], pattern_row["event_ids"]) == (visit_id, [click_id, visit_id])


async def test_pattern_outside_window_scores_nothing(scoring: ScoringHarness) -> None:
    clock.freeze(NOW + timedelta(days=10))
    model = await _model(scoring)
    contact = new_id()

    await scoring.deliver(recorded(contact, "email_clicked", at=NOW))
    await scoring.deliver(recorded(contact, "page_view", at=NOW + timedelta(days=8), properties={"url": "/pricing"}))

    assert _rows(await scoring.model_score(contact, model), "click-then-pricing") == []


async def test_ledger_explains_every_point(scoring: ScoringHarness) -> None:
    clock.freeze(NOW)
    model = await _model(scoring)
    contact = new_id()
    await scoring.deliver(changed(contact, attributes={"job_title": "VP"}, company={"size": 2000}))
    await scoring.deliver(recorded(contact, "email_clicked", at=NOW - timedelta(hours=2)))
    await scoring.deliver(recorded(contact, "page_view", at=NOW - timedelta(hours=1), properties={"url": "/pricing"}))

    score = await scoring.model_score(contact, model)

    assert score["total"] == 10 + 15 + 4 + 3 + 20
    assert sum(row["current_points"] for row in score["ledger"]) == score["total"]
    assert sum(row["current_points"] for row in score["ledger"] if row["kind"] == "fit") == score["fit"]
    for row in score["ledger"]:
        assert row["version"] == 1
        assert row["source"] in ("event", "contact")
        assert row["kind"] == "fit" or row["event_id"] is not None


async def test_same_envelope_delivered_twice_scores_once(scoring: ScoringHarness) -> None:
    clock.freeze(NOW)
    model = await _model(scoring)
    contact = new_id()
    event = recorded(contact, "page_view", properties={"url": "/pricing"})

    outcomes = await scoring.deliver(event, event)

    assert outcomes == ["applied", "duplicate"]
    assert (await scoring.model_score(contact, model))["total"] == 15


async def test_same_timeline_event_in_two_envelopes_scores_once(scoring: ScoringHarness) -> None:
    clock.freeze(NOW)
    model = await _model(scoring)
    contact = new_id()
    event_id = new_id()

    await scoring.deliver(recorded(contact, "page_view", properties={"url": "/pricing"}, event_id=event_id))
    await scoring.deliver(recorded(contact, "page_view", properties={"url": "/pricing"}, event_id=event_id))

    score = await scoring.score(contact)
    assert score["events_held"] == 1
    assert score["models"][model]["total"] == 15


async def test_machine_and_bot_events_earn_nothing(scoring: ScoringHarness) -> None:
    clock.freeze(NOW)
    model = await _model(scoring)
    contact = new_id()

    await scoring.deliver(
        recorded(contact, "email_clicked", properties={"bot": True}),
        recorded(contact, "page_view", properties={"url": "/pricing", "machine": True}),
        recorded(contact, "page_view", properties={"url": "/pricing", "machine": "true"}),
    )

    score = await scoring.score(contact)
    assert score["events_held"] == 3
    assert model not in score["models"]


async def test_score_change_is_published(scoring: ScoringHarness) -> None:
    clock.freeze(NOW)
    model = await _model(scoring)
    contact = new_id()

    await scoring.deliver(recorded(contact, "email_clicked"))

    published = scoring.outbox.payloads(scoring_topics.SCORE_CHANGED, contact_id=contact, model=model)
    assert [(item["total"], item["engagement"]) for item in published] == [(3, 3)]


async def test_stage_change_kept_in_facts(scoring: ScoringHarness) -> None:
    contact = new_id()

    await scoring.deliver(stage_changed(contact, "mql", at=NOW), stage_changed(contact, "lead", at=NOW - timedelta(hours=1)))

    async with scoring.app.state.db.session() as session:
        facts = await session.get(ContactFacts, contact)
    assert facts is not None
    assert facts.stage == "mql"
    assert set(facts.stages_reached) == {"mql", "lead"}


async def test_older_contact_snapshot_is_ignored(scoring: ScoringHarness) -> None:
    clock.freeze(NOW)
    model = await _model(scoring)
    contact = new_id()

    await scoring.deliver(changed(contact, attributes={"job_title": "VP"}, at=NOW))
    await scoring.deliver(changed(contact, attributes={"job_title": "Intern"}, at=NOW - timedelta(minutes=5)))

    assert (await scoring.model_score(contact, model))["fit"] == 10


async def test_new_version_leaves_scores_until_rescore(scoring: ScoringHarness) -> None:
    clock.freeze(NOW)
    model = await _model(scoring)
    contact = new_id()
    await scoring.deliver(recorded(contact, "email_clicked"))

    changed_rules = {**RULES, "rules": [{**rule, "points": 9} if rule["name"] == "click" else rule for rule in RULES["rules"]]}
    await scoring.put_model(changed_rules, name=model)
    before_rescore = await scoring.model_score(contact, model)
    await scoring.deliver(recorded(contact, "email_clicked"))
    after_new_event = await scoring.model_score(contact, model)

    assert (before_rescore["total"], before_rescore["version"], before_rescore["active_version"]) == (3, 1, 2)
    assert after_new_event["total"] == 3 + 9
    assert [row["version"] for row in after_new_event["ledger"]] == [1, 2]


async def test_erasure_deletes_everything_and_drops_late_events(scoring: ScoringHarness) -> None:
    clock.freeze(NOW)
    await _model(scoring)
    contact = new_id()
    await scoring.deliver(changed(contact, attributes={"job_title": "VP"}), recorded(contact, "email_clicked"))

    await scoring.deliver(erased(contact))
    await scoring.deliver(recorded(contact, "email_clicked"))

    async with scoring.app.state.db.session() as session:
        for table in (ScoredEvent, ContactScore, LedgerRow, ContactFacts):
            rows = (await session.exec(select(table).where(table.contact_id == contact))).all()  # type: ignore[attr-defined]
            assert rows == [], table.__tablename__
        assert await session.get(ErasedContact, erased_key(contact)) is not None
    export = (await scoring.client.get(f"/contacts/{contact}/export")).json()
    assert (export["facts"], export["events"], export["scores"]["models"], export["firings"]) == (None, [], {}, [])


async def test_export_holds_everything_about_the_contact(scoring: ScoringHarness) -> None:
    clock.freeze(NOW)
    model = await _model(scoring)
    contact = new_id()
    await scoring.deliver(changed(contact, attributes={"job_title": "VP"}, email="ann@example.com"))
    await scoring.deliver(recorded(contact, "email_clicked", properties={"url": "https://acme.example/x"}))

    export = (await scoring.client.get(f"/contacts/{contact}/export")).json()

    assert export["facts"]["facts"]["email"] == "ann@example.com"
    assert [event["type"] for event in export["events"]] == ["email_clicked"]
    assert export["events"][0]["properties"] == {"url": "https://acme.example/x"}
    assert export["scores"]["models"][model]["total"] == 13


def _history(contact: str) -> list[Any]:
    """Facts, then events over two days that touch every rule kind, in the order they happen."""
    pricing = {"url": "https://acme.example/pricing"}
    return [
        changed(contact, attributes={"job_title": "VP Sales"}, company={"size": 2000}),
        recorded(contact, "page_view", at=NOW - timedelta(days=2), properties=pricing),
        recorded(contact, "email_clicked", at=NOW - timedelta(days=1)),
        recorded(contact, "page_view", at=NOW - timedelta(hours=20), properties=pricing),
        recorded(contact, "content_downloaded", at=NOW - timedelta(hours=3)),
        recorded(contact, "content_downloaded", at=NOW - timedelta(hours=2)),
        recorded(contact, "content_downloaded", at=NOW - timedelta(hours=1)),
        stage_changed(contact, "lead", at=NOW - timedelta(minutes=30)),
        recorded(contact, "page_view", at=NOW - timedelta(minutes=10), properties=pricing),
    ]


def _ledger(score: dict[str, Any]) -> list[tuple[str, float]]:
    return sorted((row["rule"], row["points"]) for row in score["ledger"])


async def _assert_same_score(scoring: ScoringHarness, model: str, batched: str, one_by_one: str) -> dict[str, Any]:
    """Check that the batched contact's score and ledger equal those of the contact scored event by event."""
    expected, got = await scoring.model_score(one_by_one, model), await scoring.model_score(batched, model)
    assert (got["total"], got["fit"], got["engagement"]) == (expected["total"], expected["fit"], expected["engagement"])
    assert _ledger(got) == _ledger(expected)
    return got  # type: ignore[no-any-return]


async def test_batch_scores_as_single_events(scoring: ScoringHarness) -> None:
    clock.freeze(NOW)
    model = await _model(scoring)
    one_by_one, batched, other = new_id(), new_id(), new_id()

    for item in _history(one_by_one):
        await scoring.deliver(item)
    # Another contact's events in between, as a real batch mixes contacts.
    mixed = [item for pair in zip(_history(batched), _history(other)) for item in pair]
    outcomes = await scoring.deliver_batch(*mixed)

    assert outcomes == {"applied": len(mixed)}
    assert scoring.consumer.split_batches == 0
    got = await _assert_same_score(scoring, model, batched, one_by_one)
    assert got["total"] > 0


async def test_batch_of_known_contacts_scores_as_single_events(scoring: ScoringHarness) -> None:
    clock.freeze(NOW)
    model = await _model(scoring)
    one_by_one, batched, other = new_id(), new_id(), new_id()
    for item in _history(one_by_one):
        await scoring.deliver(item)
    # Scoring has these contacts before the batch, so the batch reads their pattern history at once.
    for contact in (batched, other):
        await scoring.deliver(_history(contact)[0])

    mixed = [item for pair in zip(_history(batched)[1:], _history(other)[1:]) for item in pair]
    outcomes = await scoring.deliver_batch(*mixed)

    assert outcomes == {"applied": len(mixed)}
    assert scoring.consumer.split_batches == 0
    await _assert_same_score(scoring, model, batched, one_by_one)


async def test_batch_drops_events_after_erasure(scoring: ScoringHarness) -> None:
    clock.freeze(NOW)
    await _model(scoring)
    contact = new_id()
    history = _history(contact)

    await scoring.deliver_batch(*history[:3], erased(contact), *history[3:])

    assert scoring.consumer.split_batches == 0
    async with scoring.app.state.db.session() as session:
        assert (await session.exec(select(LedgerRow).where(LedgerRow.contact_id == contact))).all() == []
        assert (await session.exec(select(ScoredEvent).where(ScoredEvent.contact_id == contact))).all() == []
        assert await session.get(ContactFacts, contact) is None
        assert await session.get(ErasedContact, erased_key(contact)) is not None


async def test_batch_after_erasure_stores_nothing(scoring: ScoringHarness) -> None:
    clock.freeze(NOW)
    model = await _model(scoring)
    contact, other = new_id(), new_id()
    await scoring.deliver_batch(*_history(contact)[:2])
    await scoring.deliver_batch(erased(contact))

    # Late copies of the erased contact's events, in a batch with a contact new to scoring.
    await scoring.deliver_batch(*_history(contact), *_history(other)[:2])

    assert scoring.consumer.split_batches == 0
    async with scoring.app.state.db.session() as session:
        assert (await session.exec(select(LedgerRow).where(LedgerRow.contact_id == contact))).all() == []
        assert (await session.exec(select(ScoredEvent).where(ScoredEvent.contact_id == contact))).all() == []
        assert await session.get(ContactFacts, contact) is None
    assert (await scoring.model_score(other, model))["total"] > 0


async def test_ledger_key_clash_fails_event(scoring: ScoringHarness) -> None:
    clock.freeze(NOW)
    await _model(scoring)
    pricing = {"url": "https://acme.example/pricing"}
    event_id = new_id()
    first = recorded(new_id(), "page_view", properties=pricing, event_id=event_id)
    # The same event id for another contact breaks the ledger's key (model, rule, event).
    clash = recorded(new_id(), "page_view", properties=pricing, event_id=event_id)
    assert await scoring.deliver(first) == ["applied"]

    with pytest.raises(IntegrityError):
        await scoring.deliver(clash)
    with pytest.raises(IntegrityError):
        await scoring.deliver_batch(clash)

    async with scoring.app.state.db.session() as session:
        assert await session.get(ProcessedEvent, clash.id) is None
