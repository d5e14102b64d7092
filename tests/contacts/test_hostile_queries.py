"""Hostile text in segment filters and list parameters reaches SQL only as bound values.

Each filter value below is SQL that would widen the match if it were pasted into the query, and
each LIKE wildcard would match every name if it were not escaped. The segment must hold exactly
the contacts whose stored value contains that text literally.
"""

import base64
import json
import uuid
from typing import Any

import httpx
import pytest

from tests.contacts.support import Apps, create_contact

SQL_TEXTS = [
    "' OR '1'='1",
    "x'); DROP TABLE contacts; --",
    '" OR 1=1 --',
    "%",
    "_",
    "\\",
]


def _cursor(*values: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(values)).encode()).decode().rstrip("=")


async def _members(client: httpx.AsyncClient, filter_: dict[str, Any]) -> set[str]:
    response = await client.post("/segments", json={"name": "hostile", "filter": filter_})
    assert response.status_code == 201, response.text

    members = await client.get(f"/segments/{response.json()['id']}/contacts", params={"limit": 500})
    assert members.status_code == 200, members.text
    return {item["id"] for item in members.json()["items"]}


@pytest.mark.parametrize("text", SQL_TEXTS)
async def test_filter_value_matches_only_literal_text(contacts_app: Apps, text: str) -> None:
    _, client = contacts_app
    tag = f"Hostile{uuid.uuid4().hex[:10]}"
    literal = await create_contact(client, last_name=tag, first_name=f"a{text}b")
    plain = await create_contact(client, last_name=tag, first_name="Plain")
    scope = {"field": "last_name", "op": "eq", "value": tag}

    equal = await _members(client, {"all": [scope, {"field": "first_name", "op": "eq", "value": text}]})
    contains = await _members(client, {"all": [scope, {"field": "first_name", "op": "contains", "value": text}]})
    starts = await _members(client, {"all": [scope, {"field": "first_name", "op": "starts_with", "value": text}]})

    assert equal == set()
    assert contains == {literal["id"]}
    assert plain["id"] not in contains
    assert starts == set()


async def test_event_property_value_is_bound(contacts_app: Apps) -> None:
    _, client = contacts_app
    tag = f"Hostile{uuid.uuid4().hex[:10]}"
    visitor = await create_contact(client, last_name=tag)
    other = await create_contact(client, last_name=tag)
    hostile_url = "/pricing' OR '1'='1"
    for contact, url in ((visitor, hostile_url), (other, "/about")):
        response = await client.post("/events", json={"contact_id": contact["id"], "type": "page_view", "properties": {"url": url}})
        assert response.status_code == 202, response.text

    members = await _members(client, {"all": [
        {"field": "last_name", "op": "eq", "value": tag},
        {"event": "page_view", "where": [{"property": "url", "op": "eq", "value": hostile_url}]},
    ]})

    assert members == {visitor["id"]}


@pytest.mark.parametrize(
    ("filter_", "path"),
    [
        ({"field": "attributes.x') OR 1=1 --", "op": "eq", "value": "a"}, "filter.field"),
        ({"event": "page_view", "where": [{"property": "url\") OR 1=1 --", "op": "eq", "value": "a"}]}, "filter.where[0].property"),
        ({"event": "page_view' OR '1'='1"}, "filter.event"),
        ({"field": "first_name", "op": "eq; DROP TABLE contacts", "value": "a"}, "filter.op"),
    ],
)
async def test_hostile_names_are_422_at_their_path(contacts_app: Apps, filter_: dict[str, Any], path: str) -> None:
    _, client = contacts_app

    response = await client.post("/segments", json={"name": "hostile", "filter": filter_})

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    fields = [error["field"] for error in response.json()["errors"]]
    assert any(field.startswith(path) for field in fields), fields


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("email", "' OR '1'='1"),
        ("stage", "lead' OR '1'='1"),
        ("segment_id", "x' OR '1'='1"),
    ],
)
async def test_list_parameters_never_widen_the_list(contacts_app: Apps, name: str, value: str) -> None:
    _, client = contacts_app
    await create_contact(client)

    response = await client.get("/contacts", params={name: value})

    assert response.status_code in (200, 422), response.text
    if response.status_code == 200:
        assert response.json()["items"] == []


@pytest.mark.parametrize(
    "values",
    [
        ["' OR '1'='1", "x"],
        [20240101, "x"],
        ["2024-01-01T00:00:00+00:00", {"id": "x' OR '1'='1"}],
        [None, None],
    ],
)
@pytest.mark.parametrize("path", ["/contacts", "/contacts/{id}/timeline"])
async def test_forged_cursor_is_422_naming_cursor(contacts_app: Apps, values: list[Any], path: str) -> None:
    _, client = contacts_app
    contact = await create_contact(client)

    response = await client.get(path.format(id=contact["id"]), params={"cursor": _cursor(*values)})

    assert response.status_code == 422, response.text
    assert [error["field"] for error in response.json()["errors"]] == ["cursor"]


async def test_contacts_table_intact_after_hostile_requests(contacts_app: Apps) -> None:
    _, client = contacts_app
    contact = await create_contact(client, first_name="x'); DROP TABLE contacts; --")

    await client.get("/contacts", params={"email": "x'); DROP TABLE contacts; --"})
    read = await client.get(f"/contacts/{contact['id']}")

    assert read.status_code == 200
    assert read.json()["first_name"] == "x'); DROP TABLE contacts; --"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"updated_since": "yesterday"}, "updated_since"),
        ({"segment_id": "no-such-segment"}, "segment_id"),
    ],
)
async def test_bad_query_parameter_is_named_as_sent(contacts_app: Apps, params: dict[str, str], field: str) -> None:
    _, client = contacts_app

    response = await client.get("/contacts", params=params)

    assert response.status_code == 422, response.text
    assert [error["field"] for error in response.json()["errors"]] == [field]
