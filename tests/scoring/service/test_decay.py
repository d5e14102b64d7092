"""Decay over 30 days with the platform clock moved, and what it does to MQLs."""

from datetime import timedelta
from typing import Any

from services.kit import clock
from services.kit.contracts import scoring as scoring_topics
from services.scoring.thresholds.decay import check_decayed_mqls
from tests.scoring.service.support import NOW, ScoringHarness, changed, new_id, recorded

HALF_LIFE: dict[str, Any] = {
    "mql_threshold": 10,
    "decay": {"type": "half_life", "half_life_days": 30},
    "rules": [
        {"name": "download", "kind": "engagement", "event": "content_downloaded", "points": 16},
        {"name": "bounce", "kind": "engagement", "event": "email_bounced", "points": -4, "decay": {"type": "none"}},
        {"name": "vp", "kind": "fit", "points": 5, "when": {"field": "attributes.job_title", "op": "eq", "value": "VP"}},
    ],
}

LINEAR: dict[str, Any] = {
    "mql_threshold": 100,
    "decay": {"type": "linear", "points_per_day": 2, "grace_days": 14},
    "rules": [{"name": "demo", "kind": "engagement", "event": "demo_requested", "points": 40}],
}


async def test_half_life_decay_over_30_days(scoring: ScoringHarness) -> None:
    clock.freeze(NOW)
    model = str((await scoring.put_model(HALF_LIFE))["name"])
    contact = new_id()
    await scoring.deliver(changed(contact, attributes={"job_title": "VP"}))
    await scoring.deliver(recorded(contact, "content_downloaded"), recorded(contact, "email_bounced"))

    seen = {}
    for day in (0, 15, 30):
        clock.freeze(NOW + timedelta(days=day))
        score = await scoring.model_score(contact, model)
        seen[day] = (score["total"], score["fit"], score["engagement"])

    assert seen == {0: (17, 5, 12), 15: (12.31, 5, 7.31), 30: (9, 5, 4)}


async def test_ledger_shows_decayed_value_per_row(scoring: ScoringHarness) -> None:
    clock.freeze(NOW)
    model = str((await scoring.put_model(HALF_LIFE))["name"])
    contact = new_id()
    await scoring.deliver(recorded(contact, "content_downloaded"))

    clock.advance(timedelta(days=60))
    score = await scoring.model_score(contact, model)

    assert [(row["points"], row["current_points"]) for row in score["ledger"]] == [(16, 4)]
    assert score["engagement_before_decay"] == 16


async def test_linear_decay_after_grace_period(scoring: ScoringHarness) -> None:
    clock.freeze(NOW)
    model = str((await scoring.put_model(LINEAR))["name"])
    contact = new_id()
    await scoring.deliver(recorded(contact, "demo_requested"))

    totals = []
    for _ in range(3):
        totals.append((await scoring.model_score(contact, model))["total"])
        clock.advance(timedelta(days=10))

    clock.advance(timedelta(days=10))
    final = await scoring.model_score(contact, model)
    assert totals == [40, 40, 28]
    assert (final["total"], final["linear_decay"]) == (0, -40)


async def test_decay_below_mql_keeps_mql_by_default(scoring: ScoringHarness) -> None:
    clock.freeze(NOW)
    model = str((await scoring.put_model(HALF_LIFE))["name"])
    contact = new_id()
    await scoring.deliver(recorded(contact, "content_downloaded"))

    clock.advance(timedelta(days=30))
    await check_decayed_mqls(scoring.ctx, force=True)
    score = await scoring.model_score(contact, model)

    assert (score["total"], score["mql"]) == (8, True)
    assert scoring.outbox.payloads(scoring_topics.MQL_LOST, contact_id=contact) == []


async def test_decay_below_mql_demotes_when_model_says_so(scoring: ScoringHarness) -> None:
    clock.freeze(NOW)
    model = str((await scoring.put_model({**HALF_LIFE, "demote_below_threshold": True}))["name"])
    contact = new_id()
    await scoring.deliver(recorded(contact, "content_downloaded"))

    clock.advance(timedelta(days=10))
    await check_decayed_mqls(scoring.ctx, force=True)
    still_mql = (await scoring.model_score(contact, model))["mql"]
    clock.advance(timedelta(days=20))
    await check_decayed_mqls(scoring.ctx, force=True)
    await check_decayed_mqls(scoring.ctx, force=True)

    assert still_mql is True
    lost = scoring.outbox.payloads(scoring_topics.MQL_LOST, contact_id=contact, model=model)
    assert [(item["score"], item["threshold"]) for item in lost] == [(8, 10)]
    assert (await scoring.model_score(contact, model))["mql"] is False

    await scoring.deliver(recorded(contact, "content_downloaded"))
    reached = scoring.outbox.payloads(scoring_topics.MQL_REACHED, contact_id=contact, model=model)
    assert [item["score"] for item in reached] == [16, 24]
