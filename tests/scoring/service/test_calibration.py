"""Calibration of a model against outcomes from the contacts' stages and attributes."""

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from services.kit import clock
from tests.scoring.service.support import NOW, ScoringHarness, changed, new_id, recorded, stage_changed
from tests.support.environment import TestEnvironment as Environment, create_database, drop_database, isolated_database_url
from tests.support.threads import in_thread

# Ten leads; True marks those that became an SQL or later.
SAMPLE = [(10, False), (20, False), (30, True), (30, False), (40, True), (50, False), (60, True), (70, True), (80, True), (90, True)]


@pytest.fixture(autouse=True)
def empty_database(own_scoring_database: None, scoring_environment: Environment, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A scoring database of this test alone, because calibration samples every contact the service stores."""
    url = isolated_database_url(scoring_environment, "scoring", f"calibration_{uuid.uuid4().hex[:8]}")
    in_thread(lambda: create_database("scoring", url))
    monkeypatch.setenv("SCORING_DATABASE_URL", url)
    yield
    in_thread(lambda: drop_database(url))


async def _scored_sample(scoring: ScoringHarness) -> tuple[str, list[str]]:
    """Give each lead of SAMPLE its score (one +10 event per ten points) and its outcome."""
    event_type = f"calibration_{uuid.uuid4().hex[:8]}"
    document = {"mql_threshold": 50, "rules": [{"name": "ten", "kind": "engagement", "event": event_type, "points": 10}]}
    model = str((await scoring.put_model(document))["name"])
    contacts = []
    for index, (score, converted) in enumerate(SAMPLE):
        contact = new_id()
        contacts.append(contact)
        await scoring.deliver(*(recorded(contact, event_type) for _ in range(score // 10)))
        await scoring.deliver(changed(contact, attributes={"won": converted, "plan": "pro" if converted else "free"}))
        if converted:
            await scoring.deliver(stage_changed(contact, "customer" if index == 9 else "sql"))
            await scoring.deliver(stage_changed(contact, "disqualified" if index == 2 else "sql"))
    return model, contacts


async def _calibrate(scoring: ScoringHarness, model: str, outcome: Any) -> dict[str, Any]:
    response = await scoring.client.post(f"/scoring/models/{model}/calibration", json={"outcome": outcome})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_calibration_of_labelled_sample(scoring: ScoringHarness) -> None:
    clock.freeze(NOW)
    model, _ = await _scored_sample(scoring)

    report = await _calibrate(scoring, model, "sql")

    assert (report["samples"], report["conversions"], report["truncated"]) == (10, 6, False)
    assert report["auc"] == pytest.approx(21.5 / 24)
    best = report["best_threshold"]
    assert (best["threshold"], best["sensitivity"], best["specificity"]) == (60, pytest.approx(4 / 6), 1)
    current = report["current_threshold"]
    assert (current["threshold"], current["sensitivity"], current["specificity"]) == (50, pytest.approx(4 / 6), 0.75)
    deciles = [(item["decile"], item["count"], item["conversions"]) for item in report["deciles"]]
    assert deciles == [(1, 1, 0), (2, 1, 0), (3, 2, 1), (4, 0, 0), (5, 1, 1), (6, 1, 0), (7, 1, 1), (8, 1, 1), (9, 1, 1), (10, 1, 1)]
    assert report["deciles"][3]["conversion_rate"] is None
    assert report["deciles"][2]["conversion_rate"] == 0.5


async def test_contact_without_points_scores_zero(scoring: ScoringHarness) -> None:
    clock.freeze(NOW)
    model, _ = await _scored_sample(scoring)
    silent = new_id()
    await scoring.deliver(changed(silent, attributes={"won": True}))
    await scoring.deliver(stage_changed(silent, "sql"))

    report = await _calibrate(scoring, model, "sql")

    # The silent converter ranks below all four non-converters: 21.5 of 24 pairs become 21.5 of 28.
    assert (report["samples"], report["conversions"]) == (11, 7)
    assert report["auc"] == pytest.approx(21.5 / 28)


async def test_customer_outcome_counts_customers_only(scoring: ScoringHarness) -> None:
    clock.freeze(NOW)
    model, _ = await _scored_sample(scoring)

    report = await _calibrate(scoring, model, "customer")

    assert report["conversions"] == 1
    assert report["auc"] == pytest.approx(1.0)
    assert report["best_threshold"]["threshold"] == 90


async def test_attribute_outcome(scoring: ScoringHarness) -> None:
    clock.freeze(NOW)
    model, _ = await _scored_sample(scoring)

    won = await _calibrate(scoring, model, {"attribute": "won", "equals": True})
    plan = await _calibrate(scoring, model, {"attribute": "plan", "equals": "pro"})
    number = await _calibrate(scoring, model, {"attribute": "won", "equals": 1})

    assert won["conversions"] == plan["conversions"] == 6
    assert won["auc"] == plan["auc"] == pytest.approx(21.5 / 24)
    assert number["conversions"] == 0
    assert number["auc"] is None


async def test_unknown_outcome_is_422(scoring: ScoringHarness) -> None:
    response = await scoring.client.post("/scoring/models/default/calibration", json={"outcome": "won"})

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"].startswith("outcome")


@pytest.mark.parametrize(
    ("outcome", "fields"),
    [
        ("won", ["outcome"]),
        (5, ["outcome"]),
        (None, ["outcome"]),
        ({"attribute": "won", "equals": [True]}, ["outcome.equals"]),
        ({"attribute": "won", "equals": None}, ["outcome.equals"]),
        ({"attribute": "won"}, ["outcome.equals"]),
        ({"attribute": "", "equals": True}, ["outcome.attribute"]),
        ({"attribute": "won", "equals": True, "since": "2024"}, ["outcome.since"]),
    ],
)
async def test_invalid_outcome_error_names_body_path(scoring: ScoringHarness, outcome: Any, fields: list[str]) -> None:
    response = await scoring.client.post("/scoring/models/default/calibration", json={"outcome": outcome})

    assert response.status_code == 422
    assert [error["field"] for error in response.json()["errors"]] == fields


async def test_calibration_of_unknown_model_is_404(scoring: ScoringHarness) -> None:
    response = await scoring.client.post(f"/scoring/models/none-{uuid.uuid4().hex[:6]}/calibration", json={"outcome": "sql"})

    assert response.status_code == 404
