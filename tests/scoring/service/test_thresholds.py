"""Edge-triggered thresholds and the MQL trigger: fire on the upward crossing, once unless re-armed."""

from datetime import timedelta
from typing import Any

from sqlmodel import select

from services.kit import clock
from services.kit.contracts import scoring as scoring_topics
from services.scoring.thresholds.models import ThresholdFiring
from tests.scoring.service.support import NOW, ScoringHarness, new_id, recorded, unique_name

# Points chosen for case 10: +12, +1, -5, +5, and one event per contact to set any score.
STEPS: dict[str, Any] = {
    "mql_threshold": 1000,
    "rules": [
        {"name": "demo", "kind": "engagement", "event": "demo_requested", "points": 12},
        {"name": "visit", "kind": "engagement", "event": "page_view", "points": 1},
        {"name": "bounce", "kind": "engagement", "event": "email_bounced", "points": -5},
        {"name": "webinar", "kind": "engagement", "event": "webinar_attended", "points": 5},
        {"name": "ten", "kind": "engagement", "event": "ten_points", "points": 10},
    ],
}


async def _put_threshold(scoring: ScoringHarness, name: str, **body: Any) -> dict[str, Any]:
    response = await scoring.client.put(f"/scoring/thresholds/{name}", json=body)
    assert response.status_code in (200, 201), response.text
    return response.json()  # type: ignore[no-any-return]


async def _calls(scoring: ScoringHarness, threshold: str, contact_id: str) -> int:
    response = await scoring.client.get(f"/scoring/thresholds/{threshold}/firings", params={"contact_id": contact_id})
    assert response.status_code == 200, response.text
    return len(response.json()["items"])


async def _set_score(scoring: ScoringHarness, contact_id: str, tens: int) -> None:
    for index in range(tens):
        await scoring.deliver(recorded(contact_id, "ten_points", at=NOW - timedelta(minutes=index)))


async def test_case_10_threshold_fires_on_upward_crossing_only(scoring: ScoringHarness) -> None:
    clock.freeze(NOW)
    model = str((await scoring.put_model(STEPS))["name"])
    plain, rearmed = unique_name("t"), unique_name("t-rearm")
    await _put_threshold(scoring, plain, model=model, min_score=10, action="notify_sales")
    await _put_threshold(scoring, rearmed, model=model, min_score=10, action="notify_sales", rearm=True)
    person = new_id()

    await scoring.deliver(recorded(person, "demo_requested"))
    assert (await _calls(scoring, plain, person), await _calls(scoring, rearmed, person)) == (1, 1)

    await scoring.deliver(recorded(person, "page_view"))
    assert (await scoring.model_score(person, model))["total"] == 13
    assert (await _calls(scoring, plain, person), await _calls(scoring, rearmed, person)) == (1, 1)

    await scoring.deliver(recorded(person, "email_bounced"))
    assert (await scoring.model_score(person, model))["total"] == 8
    assert (await _calls(scoring, plain, person), await _calls(scoring, rearmed, person)) == (1, 1)

    await scoring.deliver(recorded(person, "webinar_attended"))
    assert (await scoring.model_score(person, model))["total"] == 13
    assert (await _calls(scoring, plain, person), await _calls(scoring, rearmed, person)) == (1, 2)

    published = scoring.outbox.payloads(scoring_topics.THRESHOLD_CROSSED, contact_id=person, threshold=plain)
    assert [(item["action"], item["score"], item["min_score"]) for item in published] == [("notify_sales", 12, 10)]

    definition = (await scoring.client.get(f"/scoring/thresholds/{plain}")).json()
    assert (definition["action"], definition["min_score"], definition["rearm"], definition["revision"]) == (
        "notify_sales", 10, False, 1,
    )
    assert definition["firings"] == 1


async def test_case_10_jump_past_threshold_fires(scoring: ScoringHarness) -> None:
    clock.freeze(NOW)
    model = str((await scoring.put_model(STEPS))["name"])
    threshold = unique_name("t")
    await _put_threshold(scoring, threshold, model=model, min_score=10, action="notify_sales")
    person = new_id()

    await scoring.deliver(recorded(person, "ten_points"), recorded(person, "ten_points"))

    assert await _calls(scoring, threshold, person) == 1


async def test_case_10_backfill_fires_for_existing_contacts_once(scoring: ScoringHarness) -> None:
    clock.freeze(NOW)
    model = str((await scoring.put_model(STEPS))["name"])
    q, r, s = new_id(), new_id(), new_id()
    await _set_score(scoring, q, 6)
    await _set_score(scoring, r, 4)
    await _set_score(scoring, s, 5)
    await scoring.deliver(recorded(s, "webinar_attended"))
    assert [(await scoring.model_score(contact, model))["total"] for contact in (q, r, s)] == [60, 40, 55]

    threshold = unique_name("u")
    saved = await _put_threshold(scoring, threshold, model=model, min_score=50, action="notify_sales", apply_to_existing=True)
    assert saved["backfill_job"]["total"] == 3
    await scoring.finish_jobs(saved["backfill_job"]["id"])

    assert [await _calls(scoring, threshold, contact) for contact in (q, r, s)] == [1, 0, 1]
    job = (await scoring.client.get(f"/scoring/jobs/{saved['backfill_job']['id']}")).json()
    assert (job["state"], job["done"], job["total"]) == ("done", 3, 3)

    again = await scoring.client.put(
        f"/scoring/thresholds/{threshold}",
        json={"model": model, "min_score": 50, "action": "notify_sales", "apply_to_existing": True},
    )
    assert again.status_code == 200
    assert again.json()["backfill_job"] is None
    assert again.json()["revision"] == 1

    # A changed definition runs the backfill again, and still fires nothing twice.
    changed = await _put_threshold(
        scoring, threshold, model=model, min_score=50, action="notify_sales", apply_to_existing=True, description="v2"
    )
    await scoring.finish_jobs(changed["backfill_job"]["id"])
    assert changed["revision"] == 2
    assert (await scoring.client.get(f"/scoring/jobs/{changed['backfill_job']['id']}")).json()["state"] == "done"
    assert [await _calls(scoring, threshold, contact) for contact in (q, r, s)] == [1, 0, 1]


async def test_backfill_counts_contacts_seen_above_by_live_events(scoring: ScoringHarness) -> None:
    clock.freeze(NOW)
    model = str((await scoring.put_model(STEPS))["name"])
    threshold = unique_name("u")
    contact = new_id()
    await _set_score(scoring, contact, 6)
    await _put_threshold(scoring, threshold, model=model, min_score=50, action="notify_sales")
    await scoring.deliver(recorded(contact, "page_view"))
    assert await _calls(scoring, threshold, contact) == 0

    saved = await _put_threshold(
        scoring, threshold, model=model, min_score=50, action="notify_sales", apply_to_existing=True
    )
    await scoring.finish_jobs(saved["backfill_job"]["id"])

    assert await _calls(scoring, threshold, contact) == 1


async def test_mql_threshold_publishes_once_per_contact(scoring: ScoringHarness) -> None:
    clock.freeze(NOW)
    model = str((await scoring.put_model({**STEPS, "mql_threshold": 20}))["name"])
    person = new_id()

    await _set_score(scoring, person, 3)
    await scoring.deliver(recorded(person, "email_bounced"), recorded(person, "email_bounced"))
    await scoring.deliver(recorded(person, "ten_points", at=NOW + timedelta(minutes=1)))

    published = scoring.outbox.payloads(scoring_topics.MQL_REACHED, contact_id=person)
    assert [(item["model"], item["score"], item["threshold"], item["version"]) for item in published] == [(model, 20, 20, 1)]
    score = await scoring.model_score(person, model)
    assert (score["total"], score["mql"]) == (30, True)
    assert scoring.outbox.payloads(scoring_topics.MQL_LOST, contact_id=person) == []


async def test_demoting_model_publishes_mql_lost_and_rearms(scoring: ScoringHarness) -> None:
    clock.freeze(NOW)
    document = {**STEPS, "mql_threshold": 20, "demote_below_threshold": True}
    model = str((await scoring.put_model(document))["name"])
    person = new_id()

    await _set_score(scoring, person, 2)
    await scoring.deliver(recorded(person, "email_bounced"))
    await scoring.deliver(recorded(person, "webinar_attended"))

    assert len(scoring.outbox.payloads(scoring_topics.MQL_LOST, contact_id=person, model=model)) == 1
    assert len(scoring.outbox.payloads(scoring_topics.MQL_REACHED, contact_id=person, model=model)) == 2


async def test_threshold_with_mql_action_publishes_mql_reached(scoring: ScoringHarness) -> None:
    clock.freeze(NOW)
    model = str((await scoring.put_model(STEPS))["name"])
    threshold = unique_name("t")
    await _put_threshold(scoring, threshold, model=model, min_score=10, action="mql")
    person = new_id()

    await scoring.deliver(recorded(person, "demo_requested"))

    published = scoring.outbox.payloads(scoring_topics.MQL_REACHED, contact_id=person)
    assert [(item["trigger"], item["threshold"]) for item in published] == [(f"threshold:{threshold}", 10)]


async def test_threshold_on_unknown_model_is_422(scoring: ScoringHarness) -> None:
    response = await scoring.client.put(
        f"/scoring/thresholds/{unique_name('t')}", json={"model": unique_name("nope"), "min_score": 5, "action": "notify_sales"}
    )

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "model"


async def test_threshold_with_bad_action_is_422(scoring: ScoringHarness) -> None:
    model = str((await scoring.put_model(STEPS))["name"])

    response = await scoring.client.put(
        f"/scoring/thresholds/{unique_name('t')}", json={"model": model, "min_score": 5, "action": "email_ceo"}
    )

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "action"


async def test_deleted_threshold_is_gone(scoring: ScoringHarness) -> None:
    model = str((await scoring.put_model(STEPS))["name"])
    threshold = unique_name("t")
    await _put_threshold(scoring, threshold, model=model, min_score=5, action="notify_sales")

    assert (await scoring.client.delete(f"/scoring/thresholds/{threshold}")).status_code == 204
    assert (await scoring.client.get(f"/scoring/thresholds/{threshold}")).status_code == 404


async def test_lowered_mql_threshold_promotes_on_rescore(scoring: ScoringHarness) -> None:
    clock.freeze(NOW)
    model = str((await scoring.put_model({**STEPS, "mql_threshold": 100}))["name"])
    person = new_id()
    await _set_score(scoring, person, 3)
    before = await scoring.model_score(person, model)

    await scoring.put_model({**STEPS, "mql_threshold": 20}, name=model)
    job = (await scoring.client.post(f"/scoring/models/{model}/rescore")).json()
    await scoring.finish_jobs(job["id"])
    after = await scoring.model_score(person, model)

    async with scoring.app.state.db.session() as session:
        query = select(ThresholdFiring.trigger, ThresholdFiring.score).where(ThresholdFiring.contact_id == person)
        firings = list((await session.exec(query)).all())

    assert (before["total"], before["mql"]) == (30, False)
    assert (after["total"], after["mql"]) == (30, True)
    assert firings == [(f"mql:{model}", 30)]


async def test_rescore_does_not_promote_twice(scoring: ScoringHarness) -> None:
    clock.freeze(NOW)
    model = str((await scoring.put_model({**STEPS, "mql_threshold": 20}))["name"])
    person = new_id()
    await _set_score(scoring, person, 3)

    # A new version that leaves this contact's score as it is, then a rescore that applies it.
    rules = [{**rule, "points": 2} if rule["name"] == "visit" else rule for rule in STEPS["rules"]]
    await scoring.put_model({**STEPS, "rules": rules, "mql_threshold": 20}, name=model)
    job = (await scoring.client.post(f"/scoring/models/{model}/rescore")).json()
    await scoring.finish_jobs(job["id"])
    score = await scoring.model_score(person, model)
    async with scoring.app.state.db.session() as session:
        firings = list((await session.exec(select(ThresholdFiring.id).where(ThresholdFiring.contact_id == person))).all())

    assert (score["version"], score["total"], score["mql"]) == (2, 30, True)
    assert len(scoring.outbox.payloads(scoring_topics.MQL_REACHED, contact_id=person)) == 1
    assert len(firings) == 1
