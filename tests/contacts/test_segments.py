"""Segments: filters compiled to SQL on both databases, membership kept current, windows expiring."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.contacts.db import ProcessedEvent
from services.contacts.segments.models import Segment
from services.contacts.segments.tasks import recheck_segment_windows
from services.contacts.worker import worker_settings
from services.kit import clock
from services.kit.consumer import EventConsumer
from services.kit.contracts import EventEnvelope
from services.kit.contracts import contacts as topics
from services.kit.contracts import scoring as scoring_topics
from tests.contacts.support import Apps, create_contact, move_stage, published, worker_context


class Scope:
    """Contacts of one test, sharing a last name no other test uses, so a segment can match only them."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.tag = f"Seg{uuid.uuid4().hex[:10]}"
        self.names: dict[str, str] = {}

    async def contact(self, name: str, **fields: Any) -> str:
        contact = await create_contact(self.client, last_name=self.tag, **fields)
        self.names[contact["id"]] = name
        return contact["id"]  # type: ignore[no-any-return]

    def filter(self, condition: dict[str, Any]) -> dict[str, Any]:
        return {"all": [{"field": "last_name", "op": "eq", "value": self.tag}, condition]}

    async def members(self, condition: dict[str, Any]) -> set[str]:
        response = await self.client.post("/segments", json={"name": "test", "filter": self.filter(condition)})
        assert response.status_code == 201, response.text
        return await self.members_of(response.json()["id"])

    async def members_of(self, segment_id: str) -> set[str]:
        items = (await self.client.get(f"/segments/{segment_id}/contacts", params={"limit": 500})).json()["items"]
        return {self.names[item["id"]] for item in items}


async def _define(client: httpx.AsyncClient, name: str, type_: str, **extra: Any) -> None:
    response = await client.put(f"/attributes/{name}", json={"type": type_, "label": name, **extra})
    assert response.status_code in (200, 201), response.text


async def _event(client: httpx.AsyncClient, contact_id: str, type_: str, at: datetime | None = None, **properties: Any) -> None:
    body: dict[str, Any] = {"contact_id": contact_id, "type": type_, "properties": properties}
    if at is not None:
        body["occurred_at"] = at.isoformat()
    assert (await client.post("/events", json=body)).status_code == 202


def _score_changed(contact_id: str, total: float) -> EventEnvelope:
    payload = scoring_topics.ScoreChanged(contact_id=contact_id, model="default", total=total, fit=total / 2, engagement=total / 2, at=clock.now())
    return EventEnvelope(
        id=uuid.uuid4().hex, topic=scoring_topics.SCORE_CHANGED, producer="scoring", occurred_at=payload.at,
        payload=payload.model_dump(mode="json"),
    )


def _worker_consumer(app: FastAPI) -> EventConsumer:
    """The contacts worker's own consumer, with its handlers and its hook for batches."""
    return worker_settings(app.state.settings).functions[0].coroutine.__self__  # type: ignore[attr-defined, no-any-return]


async def _score(app: FastAPI, contact_id: str, total: float) -> None:
    assert await _worker_consumer(app).apply(app.state.db, _score_changed(contact_id, total), worker_context(app)) == "applied"


_SHARED: dict[str, Scope] = {}


@pytest.fixture
async def people(contacts_app: Apps) -> Scope:
    """Five contacts with varied fields, attributes, stages, consent, scores and events.

    They are created once per test session and only read afterwards, so every filter case shares them.
    """
    _, client = contacts_app
    scope = _SHARED.get("people")
    if scope is None:
        scope = _SHARED["people"] = await _create_people(contacts_app)
    scope.client = client
    return scope


async def _create_people(contacts_app: Apps) -> Scope:
    app, client = contacts_app
    await _define(client, "seats", "number")
    await _define(client, "trial", "boolean")
    await _define(client, "renewal", "date")
    await _define(client, "tier", "enum", allowed_values=["Free", "Pro", "Enterprise"])
    await _define(client, "tags", "string_list")
    await _define(client, "notes", "string")
    scope = Scope(client)
    now = clock.now()

    ann = await scope.contact(
        "ann", first_name="ÅSA", timezone="Europe/Stockholm", company={"domain": f"{scope.tag.lower()}-a.test", "size": 50},
        attributes={"seats": 12, "trial": True, "renewal": "2025-01-31", "tier": "Pro", "tags": ["Beta", "vip"], "notes": "100% sure_thing"},
    )
    bob = await scope.contact("bob", first_name="Bob", attributes={"seats": 3.5, "trial": False, "tier": "Free", "tags": []})
    cid = await scope.contact("cid", first_name="Cid", stage="sql", attributes={"renewal": "2024-06-30", "tags": ["alpha"]})
    await scope.contact("dee", stage="disqualified", company={"name": "Dee & Co", "size": 5000})
    eve = await scope.contact("eve", first_name="Eve", stage="mql")

    await client.put(f"/contacts/{bob}/consent", json={"status": "unsubscribed"})
    await client.put(f"/contacts/{cid}/consent", json={"status": "unsubscribed", "topic": "newsletter"})
    await _score(app, ann, 80)
    await _score(app, eve, 40)
    for days in (1, 3):
        await _event(client, ann, "page_view", now - timedelta(days=days), url="https://x.test/pricing", seconds=30)
    await _event(client, bob, "page_view", now - timedelta(days=20), url="https://x.test/pricing", seconds=5)
    await _event(client, cid, "page_view", now - timedelta(days=2), url="https://x.test/blog", seconds=90)
    await _event(client, eve, "form_submitted", datetime(2024, 3, 10, tzinfo=UTC), form="demo")
    return scope


CASES: list[tuple[str, dict[str, Any], set[str]]] = [
    ("text eq ignores case in any script", {"field": "first_name", "op": "eq", "value": "åsa"}, {"ann"}),
    ("neq matches missing", {"field": "first_name", "op": "neq", "value": "bob"}, {"ann", "cid", "dee", "eve"}),
    ("in", {"field": "first_name", "op": "in", "value": ["BOB", "cid"]}, {"bob", "cid"}),
    ("starts_with", {"field": "timezone", "op": "starts_with", "value": "europe/"}, {"ann"}),
    ("exists false", {"field": "first_name", "op": "exists", "value": False}, {"dee"}),
    ("company size gte", {"field": "company.size", "op": "gte", "value": 50}, {"ann", "dee"}),
    ("number between", {"field": "attributes.seats", "op": "between", "value": [3, 12]}, {"ann", "bob"}),
    ("number lt skips missing", {"field": "attributes.seats", "op": "lt", "value": 100}, {"ann", "bob"}),
    ("boolean eq false", {"field": "attributes.trial", "op": "eq", "value": False}, {"bob"}),
    ("boolean neq true", {"field": "attributes.trial", "op": "neq", "value": True}, {"bob", "cid", "dee", "eve"}),
    ("date gt", {"field": "attributes.renewal", "op": "gt", "value": "2024-12-31"}, {"ann"}),
    ("enum in ignores case", {"field": "attributes.tier", "op": "in", "value": ["pro", "Enterprise"]}, {"ann"}),
    ("contains keeps % and _ literal", {"field": "attributes.notes", "op": "contains", "value": "0% SURE_"}, {"ann"}),
    ("contains does not treat _ as a wildcard", {"field": "attributes.notes", "op": "contains", "value": "sure-"}, set()),
    ("list contains", {"field": "attributes.tags", "op": "contains", "value": "beta"}, {"ann"}),
    ("list in shares an element", {"field": "attributes.tags", "op": "in", "value": ["ALPHA", "vip"]}, {"ann", "cid"}),
    ("list exists ignores empty list", {"field": "attributes.tags", "op": "exists", "value": True}, {"ann", "cid"}),
    ("stage gte mql", {"field": "stage", "op": "gte", "value": "MQL"}, {"cid", "eve"}),
    ("stage lt sql excludes disqualified", {"field": "stage", "op": "lt", "value": "sql"}, {"ann", "bob", "eve"}),
    ("stage eq disqualified", {"field": "stage", "op": "eq", "value": "disqualified"}, {"dee"}),
    ("consent unsubscribed", {"field": "consent", "op": "eq", "value": "unsubscribed"}, {"bob"}),
    ("topic follows overall", {"field": "consent.newsletter", "op": "eq", "value": "unsubscribed"}, {"bob", "cid"}),
    ("score gte", {"field": "score.default", "op": "gte", "value": 50}, {"ann"}),
    ("score part", {"field": "score.default.fit", "op": "lt", "value": 30}, {"eve"}),
    ("event within window", {"event": "page_view", "where": [{"property": "url", "op": "contains", "value": "/PRICING"}], "within_days": 14}, {"ann"}),
    ("event at least twice", {"event": "page_view", "at_least": 2}, {"ann"}),
    ("never did", {"event": "page_view", "at_most": 0}, {"dee", "eve"}),
    ("property number gt", {"event": "page_view", "where": [{"property": "seconds", "op": "gt", "value": 20}]}, {"ann", "cid"}),
    ("property text never matches number", {"event": "page_view", "where": [{"property": "url", "op": "gt", "value": 1}]}, set()),
    ("property exists false", {"event": "page_view", "where": [{"property": "referrer", "op": "exists", "value": False}]}, {"ann", "bob", "cid"}),
    ("fixed window", {"event": "form_submitted", "between": {"start": "2024-03-01T00:00:00Z", "end": "2024-04-01T00:00:00Z"}}, {"eve"}),
    ("not", {"not": {"field": "stage", "op": "in", "value": ["sql", "disqualified"]}}, {"ann", "bob", "eve"}),
    ("any", {"any": [{"field": "attributes.trial", "op": "eq", "value": True}, {"event": "form_submitted"}]}, {"ann", "eve"}),
    ("created_at", {"field": "created_at", "op": "gte", "value": "2000-01-01T00:00:00Z"}, {"ann", "bob", "cid", "dee", "eve"}),
    ("created_at from year 1", {"field": "created_at", "op": "gte", "value": "0001-01-01T00:00:00Z"}, {"ann", "bob", "cid", "dee", "eve"}),
    ("fixed window from year 1", {"event": "form_submitted", "between": {"start": "0001-01-01T00:00:00Z", "end": "2024-04-01T00:00:00Z"}}, {"eve"}),
    ("company size beyond int32", {"field": "company.size", "op": "lt", "value": 2**40}, {"ann", "dee"}),
    ("company size in with a fraction", {"field": "company.size", "op": "in", "value": [50.0, 7.5]}, {"ann"}),
    ("number at the cap", {"field": "attributes.seats", "op": "lt", "value": 10**15}, {"ann", "bob"}),
]


@pytest.mark.parametrize(("case", "condition", "expected"), CASES, ids=[case[0] for case in CASES])
async def test_filter_matches(people: Scope, case: str, condition: dict[str, Any], expected: set[str]) -> None:
    assert await people.members(condition) == expected


async def test_invalid_filter_points_at_bad_part(contacts_app: Apps) -> None:
    _, client = contacts_app
    bad = {"all": [{"field": "stage", "op": "eq", "value": "mql"}, {"event": "page_view", "within_days": 0}]}

    response = await client.post("/segments", json={"name": "bad", "filter": bad})

    assert response.status_code == 422
    assert [error["field"] for error in response.json()["errors"]] == ["filter.all[1].within_days"]


async def test_filter_on_undefined_attribute_is_422(contacts_app: Apps) -> None:
    _, client = contacts_app

    response = await client.post("/segments", json={"name": "bad", "filter": {"field": "attributes.no_such_thing", "op": "exists", "value": True}})

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "filter.field"


@pytest.mark.parametrize(
    ("condition", "path"),
    [
        ({"field": "company.size", "op": "gt", "value": 10**29}, "filter.value"),
        ({"field": "attributes.seats", "op": "gt", "value": 10**29}, "filter.value"),
        ({"field": "score.default", "op": "lte", "value": -1e16}, "filter.value"),
        ({"field": "company.size", "op": "in", "value": [1, 10**20]}, "filter.value[1]"),
        ({"field": "company.size", "op": "between", "value": [0, 1e300]}, "filter.value[1]"),
        ({"event": "page_view", "where": [{"property": "n", "op": "gt", "value": 10**29}]}, "filter.where[0].value"),
        ({"event": "page_view", "where": [{"property": "n", "op": "eq", "value": 10**20}]}, "filter.where[0].value"),
        ({"field": "created_at", "op": "gt", "value": "0001-01-01T00:00:00+01:00"}, "filter.value"),
        ({"field": "updated_at", "op": "lt", "value": "9999-12-31T23:00:00-05:00"}, "filter.value"),
        ({"field": "created_at", "op": "between", "value": ["0001-01-01T00:00:00+01:00", "2020-01-01T00:00:00Z"]}, "filter.value[0]"),
        ({"event": "page_view", "between": {"start": "0001-01-01T00:00:00+01:00", "end": "2020-01-01T00:00:00Z"}}, "filter.between.start"),
    ],
)
async def test_out_of_range_filter_value_is_422(contacts_app: Apps, condition: dict[str, Any], path: str) -> None:
    _, client = contacts_app
    await _define(client, "seats", "number")

    response = await client.post("/segments", json={"name": "bad", "filter": condition})

    assert response.status_code == 422, response.text
    assert [error["field"] for error in response.json()["errors"]] == [path]


async def test_segment_saved_before_number_cap_evaluates(contacts_app: Apps) -> None:
    app, client = contacts_app
    scope = Scope(client)
    created = await client.post("/segments", json={"name": "big", "filter": scope.filter({"field": "company.size", "op": "lt", "value": 100})})
    assert created.status_code == 201, created.text
    segment_id = created.json()["id"]
    # A filter stored before numbers were capped at 1e15.
    async with app.state.db.session() as session:
        segment = await session.get(Segment, segment_id)
        assert segment is not None
        segment.filter = scope.filter({"field": "company.size", "op": "lt", "value": 10**16})
        segment.updated_at = clock.now()
        await session.commit()

    await scope.contact("ann", company={"domain": f"{scope.tag.lower()}.test", "size": 10})

    assert await scope.members_of(segment_id) == {"ann"}


async def test_membership_follows_contact_changes(contacts_app: Apps) -> None:
    app, client = contacts_app
    scope = Scope(client)
    contact = await scope.contact("ann")
    segment = (await client.post("/segments", json={"name": "leads", "filter": scope.filter({"field": "stage", "op": "eq", "value": "lead"})})).json()

    await client.patch(f"/contacts/{contact}", json={"stage": "lead"})
    entered = await scope.members_of(segment["id"])
    await move_stage(client, contact, "mql")
    left = await scope.members_of(segment["id"])

    assert (entered, left) == ({"ann"}, set())
    [entry] = await published(app, topics.SEGMENT_ENTERED, segment_id=segment["id"])
    [exit_] = await published(app, topics.SEGMENT_LEFT, segment_id=segment["id"])
    assert entry["contact_id"] == exit_["contact_id"] == contact
    assert datetime.fromisoformat(entry["at"]) <= datetime.fromisoformat(exit_["at"])


async def test_membership_follows_events(contacts_app: Apps) -> None:
    app, client = contacts_app
    scope = Scope(client)
    contact = await scope.contact("ann")
    segment = (await client.post("/segments", json={"name": "downloads", "filter": scope.filter({"event": "content_downloaded"})})).json()
    before = await scope.members_of(segment["id"])

    await _event(client, contact, "content_downloaded")

    assert (before, await scope.members_of(segment["id"])) == (set(), {"ann"})
    assert len(await published(app, topics.SEGMENT_ENTERED, segment_id=segment["id"])) == 1


async def test_membership_follows_scores(contacts_app: Apps) -> None:
    app, client = contacts_app
    scope = Scope(client)
    contact = await scope.contact("ann")
    segment = (await client.post("/segments", json={"name": "hot", "filter": scope.filter({"field": "score.default", "op": "gte", "value": 50})})).json()

    await _score(app, contact, 55)
    entered = await scope.members_of(segment["id"])
    await _score(app, contact, 20)

    assert (entered, await scope.members_of(segment["id"])) == ({"ann"}, set())


async def test_score_batch_resegments_at_end(contacts_app: Apps) -> None:
    app, client = contacts_app
    scope = Scope(client)
    ann, bob, cid = [await scope.contact(name) for name in ("ann", "bob", "cid")]
    segment = (await client.post("/segments", json={"name": "hot", "filter": scope.filter({"field": "score.default", "op": "gte", "value": 50})})).json()
    consumer = _worker_consumer(app)
    # Ann rises and falls within the batch, Bob rises, Cid falls below from above.
    await _score(app, cid, 70)
    batch = [_score_changed(ann, 60), _score_changed(bob, 51), _score_changed(ann, 10), _score_changed(cid, 5)]

    outcomes = await consumer.apply_batch(app.state.db, batch, worker_context(app))

    assert (outcomes, consumer.split_batches) == ({"applied": 4}, 0)
    assert await scope.members_of(segment["id"]) == {"bob"}
    entered = await published(app, topics.SEGMENT_ENTERED, segment_id=segment["id"])
    assert sorted(item["contact_id"] for item in entered) == sorted([bob, cid])


async def test_membership_follows_consent(contacts_app: Apps) -> None:
    _, client = contacts_app
    scope = Scope(client)
    contact = await scope.contact("ann")
    segment = (await client.post("/segments", json={"name": "mailable", "filter": scope.filter({"field": "consent", "op": "eq", "value": "subscribed"})})).json()

    await _event(client, contact, "email_bounced", bounce_class="hard")

    assert await scope.members_of(segment["id"]) == set()


async def test_contacts_list_filters_by_segment(contacts_app: Apps) -> None:
    _, client = contacts_app
    scope = Scope(client)
    ann = await scope.contact("ann", stage="lead")
    await scope.contact("bob")
    segment = (await client.post("/segments", json={"name": "leads", "filter": scope.filter({"field": "stage", "op": "eq", "value": "lead"})})).json()

    listed = (await client.get("/contacts", params={"segment_id": segment["id"]})).json()["items"]
    read = (await client.get(f"/segments/{segment['id']}")).json()

    assert [item["id"] for item in listed] == [ann]
    assert read["members"] == 1


async def test_contact_leaves_window_when_clock_moves(contacts_app: Apps) -> None:
    """"Visited /pricing in the last 14 days": the visit leaves the window 14 days later, with no new data."""
    app, client = contacts_app
    clock.freeze(datetime(2031, 3, 1, 12, 0, tzinfo=UTC))
    scope = Scope(client)
    contact = await scope.contact("ann")
    await _event(client, contact, "page_view", clock.now() - timedelta(days=1), url="/pricing")
    condition = {"event": "page_view", "where": [{"property": "url", "op": "contains", "value": "/pricing"}], "within_days": 14}
    segment = (await client.post("/segments", json={"name": "pricing", "filter": scope.filter(condition)})).json()
    ctx = worker_context(app)

    assert await scope.members_of(segment["id"]) == {"ann"}

    clock.advance(timedelta(days=12))
    await recheck_segment_windows(ctx)
    still_in = await scope.members_of(segment["id"])
    clock.advance(timedelta(days=2))
    await recheck_segment_windows(ctx)

    assert still_in == {"ann"}
    assert await scope.members_of(segment["id"]) == set()
    [left] = await published(app, topics.SEGMENT_LEFT, segment_id=segment["id"])
    assert (left["contact_id"], left["at"]) == (contact, "2031-03-15T12:00:00Z")


async def test_new_event_brings_window_check_forward(contacts_app: Apps) -> None:
    app, client = contacts_app
    clock.freeze(datetime(2032, 1, 10, tzinfo=UTC))
    scope = Scope(client)
    contact = await scope.contact("ann")
    segment = (await client.post("/segments", json={"name": "recent", "filter": scope.filter({"event": "webinar_attended", "within_days": 7})})).json()

    await _event(client, contact, "webinar_attended", clock.now() - timedelta(days=7) + timedelta(minutes=5))

    read = (await client.get(f"/segments/{segment['id']}")).json()
    assert read["next_window_check_at"] == "2032-01-10T00:05:01Z"
    clock.advance(timedelta(minutes=5, seconds=2))
    await recheck_segment_windows(worker_context(app))
    assert await scope.members_of(segment["id"]) == set()
