"""The score distribution of one model, counted from the stored scores."""

import uuid

import httpx
from fastapi import FastAPI

from services.kit import clock
from services.scoring.rulesets.models import ScoreModel
from services.scoring.scores.models import ContactScore

Apps = tuple[FastAPI, httpx.AsyncClient]


async def store_scores(app: FastAPI, totals: list[float]) -> str:
    """Store one score per total under a new model; return the model's name."""
    model = f"report-{uuid.uuid4().hex[:8]}"
    async with app.state.db.session() as session:
        for total in totals:
            session.add(ContactScore(contact_id=uuid.uuid4().hex, model=model, total=total, updated_at=clock.now()))
        await session.commit()
    return model


async def distribution(client: httpx.AsyncClient, **params: object) -> dict:
    response = await client.get("/reports/score-distribution", params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def test_equal_width_bins(scoring_app: Apps) -> None:
    app, client = scoring_app
    model = await store_scores(app, [0, 10, 20, 30, 100])

    body = await distribution(client, model=model, bins=10)

    assert (body["count"], body["min"], body["max"], body["mean"]) == (5, 0, 100, 32)
    assert [item["count"] for item in body["bins"]] == [1, 1, 1, 1, 0, 0, 0, 0, 0, 1]
    assert [(item["low"], item["high"]) for item in body["bins"]][:2] == [(0, 10), (10, 20)]
    assert body["bins"][-1]["high"] == 100


async def test_equal_scores_give_one_bin(scoring_app: Apps) -> None:
    app, client = scoring_app
    model = await store_scores(app, [42, 42, 42])

    body = await distribution(client, model=model)

    assert body["bins"] == [{"low": 42, "high": 42, "count": 3}]


async def test_model_without_scores_is_empty(scoring_app: Apps) -> None:
    app, client = scoring_app
    model = f"none-{uuid.uuid4().hex[:8]}"
    async with app.state.db.session() as session:
        now = clock.now()
        session.add(ScoreModel(name=model, active_version=1, mql_threshold=50, created_at=now, updated_at=now))
        await session.commit()

    body = await distribution(client, model=model)

    assert (body["count"], body["mean"], body["bins"]) == (0, None, [])


async def test_unknown_model_is_404(scoring_app: Apps) -> None:
    _, client = scoring_app

    response = await client.get("/reports/score-distribution", params={"model": f"nothing-{uuid.uuid4().hex[:8]}"})

    assert response.status_code == 404
    assert "no score model" in response.json()["detail"]


async def test_bad_parameters_are_rejected(scoring_app: Apps) -> None:
    _, client = scoring_app

    bad_model = await client.get("/reports/score-distribution", params={"model": "no spaces"})
    bad_bins = await client.get("/reports/score-distribution", params={"bins": 0})

    assert bad_model.status_code == 422
    assert bad_bins.status_code == 422
