"""Score models: rule sets stored as validated, numbered versions; several models side by side."""

from typing import Any

from tests.scoring.service.support import ScoringHarness, unique_name


def rule_set(points: int = 5, threshold: int = 20) -> dict[str, Any]:
    return {
        "mql_threshold": threshold,
        "rules": [{"name": "visit", "kind": "engagement", "event": "page_view", "points": points}],
    }


async def test_first_save_creates_version_one(scoring: ScoringHarness) -> None:
    name = unique_name("model")

    response = await scoring.client.put(f"/scoring/models/{name}", json=rule_set())
    scoring.models.append(name)

    assert response.status_code == 201
    body = response.json()
    assert body["active_version"] == 1
    assert body["version_created"] is True
    assert body["mql_threshold"] == 20
    assert body["demote_below_threshold"] is False
    assert body["rule_set"] == rule_set()


async def test_same_rule_set_saved_again_changes_nothing(scoring: ScoringHarness) -> None:
    name = unique_name("model")
    await scoring.put_model(rule_set(), name=name)

    response = await scoring.client.put(f"/scoring/models/{name}", json=rule_set())

    assert response.status_code == 200
    assert response.json()["version_created"] is False
    assert response.json()["active_version"] == 1


async def test_changed_rule_set_becomes_next_version(scoring: ScoringHarness) -> None:
    name = unique_name("model")
    await scoring.put_model(rule_set(), name=name)

    response = await scoring.client.put(f"/scoring/models/{name}", json=rule_set(points=7))

    assert response.status_code == 201
    assert response.json()["active_version"] == 2
    versions = (await scoring.client.get(f"/scoring/models/{name}/versions")).json()["items"]
    assert [(item["version"], item["active"]) for item in versions] == [(1, False), (2, True)]
    first = (await scoring.client.get(f"/scoring/models/{name}/versions/1")).json()
    assert first["rule_set"] == rule_set()


async def test_option_change_keeps_the_version(scoring: ScoringHarness) -> None:
    name = unique_name("model")
    await scoring.put_model(rule_set(), name=name)

    response = await scoring.client.put(
        f"/scoring/models/{name}", json={**rule_set(), "demote_below_threshold": True, "description": "trial"}
    )

    assert response.status_code == 200
    body = response.json()
    assert (body["active_version"], body["demote_below_threshold"], body["description"]) == (1, True, "trial")


async def test_invalid_rule_set_names_rule_and_field(scoring: ScoringHarness) -> None:
    name = unique_name("model")
    document = {
        "mql_threshold": 0,
        "rules": [
            {"name": "pricing-visit", "kind": "engagement", "event": "page_view", "points": 0,
             "where": {"field": "properties.url", "op": "matches", "value": "(/pricing"}},
            {"name": "size-fit", "kind": "fit", "points": 5, "when": {"field": "company.size", "op": "like", "value": 5}},
        ],
    }

    response = await scoring.client.put(f"/scoring/models/{name}", json=document)

    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    errors = {(error["rule"], error["field"]) for error in response.json()["errors"]}
    assert (None, "mql_threshold") in errors
    assert ("pricing-visit", "points") in errors
    assert ("pricing-visit", "where.value") in errors
    assert ("size-fit", "when.op") in errors
    assert (await scoring.client.get(f"/scoring/models/{name}")).status_code == 404


async def test_invalid_option_is_422(scoring: ScoringHarness) -> None:
    response = await scoring.client.put(
        f"/scoring/models/{unique_name('model')}", json={**rule_set(), "demote_below_threshold": "yes"}
    )

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "demote_below_threshold"


async def test_bad_model_name_is_422(scoring: ScoringHarness) -> None:
    response = await scoring.client.put("/scoring/models/not%20a%20slug", json=rule_set())

    assert response.status_code == 422


async def test_unknown_model_is_404(scoring: ScoringHarness) -> None:
    response = await scoring.client.get(f"/scoring/models/{unique_name('missing')}")

    assert response.status_code == 404


async def test_models_listed_side_by_side(scoring: ScoringHarness) -> None:
    prefix = unique_name("side")
    for suffix in ("a", "b", "c"):
        await scoring.put_model(rule_set(), name=f"{prefix}-{suffix}")

    first = (await scoring.client.get("/scoring/models", params={"limit": 500})).json()
    names = [item["name"] for item in first["items"]]

    assert [name for name in names if name.startswith(prefix)] == [f"{prefix}-a", f"{prefix}-b", f"{prefix}-c"]
    assert names == sorted(names)


async def test_models_list_pages_with_cursor(scoring: ScoringHarness) -> None:
    for _ in range(3):
        await scoring.put_model(rule_set())

    first = (await scoring.client.get("/scoring/models", params={"limit": 2})).json()
    second = (await scoring.client.get("/scoring/models", params={"limit": 2, "cursor": first["next_cursor"]})).json()

    assert len(first["items"]) == 2
    assert first["next_cursor"] is not None
    assert first["items"][-1]["name"] < second["items"][0]["name"]


async def test_archived_model_is_inactive_until_saved(scoring: ScoringHarness) -> None:
    name = unique_name("model")
    await scoring.put_model(rule_set(), name=name)

    assert (await scoring.client.delete(f"/scoring/models/{name}")).status_code == 204
    assert (await scoring.client.get(f"/scoring/models/{name}")).json()["active"] is False

    response = await scoring.client.put(f"/scoring/models/{name}", json=rule_set())
    assert response.status_code == 200
    assert (response.json()["active"], response.json()["active_version"]) == (True, 1)


async def test_default_model_is_installed(scoring: ScoringHarness) -> None:
    response = await scoring.client.get("/scoring/models/default")

    assert response.status_code == 200
    assert response.json()["mql_threshold"] == 50
    assert {rule["kind"] for rule in response.json()["rule_set"]["rules"]} == {"fit", "engagement", "pattern"}
