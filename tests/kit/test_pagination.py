"""Cursor decoding: anything a client can forge is a 422 naming `cursor`, never a 500 from the query."""

import base64
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.kit.pagination import (
    MAX_CURSOR_INTEGER,
    MIN_CURSOR_INTEGER,
    decode_cursor,
    decode_int_cursor,
    decode_time_cursor,
    encode_cursor,
)
from services.kit.problems import Unprocessable

App = tuple[FastAPI, httpx.AsyncClient]

# Each is a cursor a client could send in place of a `next_cursor`.
FORGED_TIME_CURSORS = [
    pytest.param(["2024-01-01T00:00:00", "x"], id="naive"),
    pytest.param(["0001-01-01T00:00:00+01:00", "x"], id="year-1-with-offset"),
    pytest.param(["9999-12-31T23:59:59-01:00", "x"], id="year-9999-with-offset"),
    pytest.param(["2024-01-01T00:00:00Z", "a\u0000b"], id="nul-in-id"),
    pytest.param(["2024-01-01T00:00:00Z", "\ud800"], id="lone-surrogate-in-id"),
]
FORGED_INT_CURSORS = [
    pytest.param([2**31], id="above-int32"),
    pytest.param([2**40], id="above-int32-within-int64"),
    pytest.param([2**63], id="above-int64"),
    pytest.param([-(2**31) - 1], id="below-int32"),
    pytest.param([True], id="boolean"),
    pytest.param([1.5], id="float"),
    pytest.param(["7"], id="text"),
]


def _cursor(*values: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(values)).encode()).decode().rstrip("=")


def _assert_names_cursor(response: httpx.Response) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert [error["field"] for error in response.json()["errors"]] == ["cursor"]


@pytest.mark.parametrize("values", FORGED_TIME_CURSORS)
def test_time_cursor_rejects_forged_values(values: list[Any]) -> None:
    with pytest.raises(Unprocessable) as raised:
        decode_time_cursor(_cursor(*values))

    assert [error["field"] for error in raised.value.errors or []] == ["cursor"]


def test_time_cursor_returns_utc_instant() -> None:
    cursor = encode_cursor("2024-05-01T12:00:00+02:00", "abc")

    instant, item_id = decode_time_cursor(cursor)

    assert instant == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert instant.tzinfo is UTC
    assert item_id == "abc"


@pytest.mark.parametrize("values", FORGED_INT_CURSORS)
def test_int_cursor_rejects_forged_values(values: list[Any]) -> None:
    with pytest.raises(Unprocessable) as raised:
        decode_int_cursor(_cursor(*values))

    assert [error["field"] for error in raised.value.errors or []] == ["cursor"]


@pytest.mark.parametrize("value", [MIN_CURSOR_INTEGER, 0, 1, MAX_CURSOR_INTEGER])
def test_int_cursor_accepts_integer_range(value: int) -> None:
    assert decode_int_cursor(encode_cursor(value)) == value


@pytest.mark.parametrize("value", [None, {"id": 1}, [1], True, 2**31, "a\u0000b", "\udfff"])
def test_cursor_rejects_unbindable_values(value: Any) -> None:
    with pytest.raises(Unprocessable):
        decode_cursor(_cursor(value), arity=1)


def test_cursor_accepts_text_and_integers() -> None:
    assert decode_cursor(encode_cursor("name-1", 42), arity=2) == ["name-1", 42]


@pytest.mark.parametrize("values", FORGED_TIME_CURSORS)
@pytest.mark.parametrize("path", ["/templates", "/sequences"])
async def test_sequencer_lists_reject_forged_time_cursor(sequencer_app: App, path: str, values: list[Any]) -> None:
    _, client = sequencer_app

    response = await client.get(path, params={"cursor": _cursor(*values)})

    _assert_names_cursor(response)


@pytest.mark.parametrize("values", FORGED_INT_CURSORS)
async def test_model_versions_reject_forged_cursor(scoring_app: App, values: list[Any]) -> None:
    _, client = scoring_app

    response = await client.get("/scoring/models/default/versions", params={"cursor": _cursor(*values)})

    _assert_names_cursor(response)


async def test_model_versions_page_with_valid_cursor(scoring_app: App) -> None:
    _, client = scoring_app

    response = await client.get("/scoring/models/default/versions", params={"cursor": encode_cursor(0)})

    assert response.status_code == 200, response.text
    assert response.json()["items"][0]["version"] == 1


@pytest.mark.parametrize("values", [pytest.param(["\u0000"], id="nul"), pytest.param(["\ud800"], id="lone-surrogate")])
async def test_model_list_rejects_unbindable_cursor(scoring_app: App, values: list[Any]) -> None:
    _, client = scoring_app

    response = await client.get("/scoring/models", params={"cursor": _cursor(*values)})

    _assert_names_cursor(response)


@pytest.mark.parametrize("values", FORGED_INT_CURSORS)
async def test_threshold_firings_reject_forged_cursor(scoring_app: App, values: list[Any]) -> None:
    _, client = scoring_app
    name = f"cursor-{uuid.uuid4().hex[:8]}"
    created = await client.put(f"/scoring/thresholds/{name}", json={"model": "default", "min_score": 50, "action": "notify_sales"})
    assert created.status_code == 201, created.text

    try:
        response = await client.get(f"/scoring/thresholds/{name}/firings", params={"cursor": _cursor(*values)})
    finally:
        await client.delete(f"/scoring/thresholds/{name}")

    _assert_names_cursor(response)
