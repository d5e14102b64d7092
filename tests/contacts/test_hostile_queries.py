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
        ["2024-01-01T00:00:00", "x"],
        ["0001-01-01T00:00:00+01:00", "x"],
        ["9999-12-31T23:59:59-01:00", "x"],
        ["2024-01-01T00:00:00Z", "a\u0000b"],
        ["2024-01-01T00:00:00Z", "\ud800"],
    ],
)
@pytest.mark.parametrize("path", ["/contacts", "/contacts/{id}/timeline"])
async def test_forged_cursor_is_422_naming_cursor(contacts_app: Apps, values: list[Any], path: str) -> None:
    _, client = contacts_app
    contact = await create_contact(client)

    response = await client.get(path.format(id=contact["id"]), params={"cursor": _cursor(*values)})

    assert response.status_code == 422, response.text
    assert [error["field"] for error in response.json()["errors"]] == ["cursor"]


@pytest.mark.parametrize("values", [[2**31], [2**40], [2**63], [-(2**31) - 1], [True], [1.5], ["1"]])
async def test_forged_stage_history_cursor_is_422(contacts_app: Apps, values: list[Any]) -> None:
    _, client = contacts_app
    contact = await create_contact(client)

    response = await client.get(f"/contacts/{contact['id']}/stage-history", params={"cursor": _cursor(*values)})

    assert response.status_code == 422, response.text
    assert [error["field"] for error in response.json()["errors"]] == ["cursor"]


@pytest.mark.parametrize("values", [["a\u0000b"], ["\ud800"]])
async def test_unbindable_segment_cursor_is_422(contacts_app: Apps, values: list[Any]) -> None:
    _, client = contacts_app
    segment = await client.post("/segments", json={"name": "cursor", "filter": {"field": "stage", "op": "eq", "value": "lead"}})
    assert segment.status_code == 201, segment.text

    listed = await client.get("/segments", params={"cursor": _cursor(*values)})
    members = await client.get(f"/segments/{segment.json()['id']}/contacts", params={"cursor": _cursor(*values)})

    for response in (listed, members):
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
        ({"updated_since": "0001-01-01T00:00:00+01:00"}, "updated_since"),
        ({"updated_since": "9999-12-31T23:00:00-05:00"}, "updated_since"),
        ({"segment_id": "no-such-segment"}, "segment_id"),
    ],
)
async def test_bad_query_parameter_is_named_as_sent(contacts_app: Apps, params: dict[str, str], field: str) -> None:
    _, client = contacts_app

    response = await client.get("/contacts", params=params)

    assert response.status_code == 422, response.text
    assert [error["field"] for error in response.json()["errors"]] == [field]


@pytest.mark.parametrize("report", ["funnel", "stage-times", "nurture-impact"])
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "0001-01-01T00:00:00+01:00"}, "since"),
        ({"until": "0001-01-01T00:00:00+01:00"}, "until"),
        ({"since": "9999-12-31T23:00:00-05:00"}, "since"),
    ],
)
async def test_report_window_out_of_range_is_422(contacts_app: Apps, report: str, params: dict[str, str], field: str) -> None:
    _, client = contacts_app

    response = await client.get(f"/reports/{report}", params=params)

    assert response.status_code == 422, response.text
    assert [error["field"] for error in response.json()["errors"]] == [field]


async def test_year_one_in_utc_is_a_valid_bound(contacts_app: Apps) -> None:
    _, client = contacts_app
    contact = await create_contact(client)

    listed = await client.get("/contacts", params={"updated_since": "0001-01-01T00:00:00Z", "email": contact["email"]})
    report = await client.get("/reports/funnel", params={"since": "0001-01-01T00:00:00Z"})

    assert listed.status_code == 200, listed.text
    assert [item["id"] for item in listed.json()["items"]] == [contact["id"]]
    assert report.status_code == 200, report.text
