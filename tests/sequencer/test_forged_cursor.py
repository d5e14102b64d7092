"""A cursor the client forged is a 422 naming `cursor`, never a server error or a wider page."""

import base64
import json
from typing import Any

import httpx
import pytest
from fastapi import FastAPI


def _cursor(*values: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(values)).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "values",
    [
        ["' OR '1'='1", "x"],
        [20240101, "x"],
        ["2024-01-01T00:00:00+00:00", ["x' OR '1'='1"]],
    ],
)
@pytest.mark.parametrize("path", ["/templates", "/sequences"])
async def test_forged_cursor_is_422(api: tuple[FastAPI, httpx.AsyncClient], values: list[Any], path: str) -> None:
    _, client = api

    response = await client.get(path, params={"cursor": _cursor(*values)})

    assert response.status_code == 422, response.text
    assert [error["field"] for error in response.json()["errors"]] == ["cursor"]
