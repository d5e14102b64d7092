"""The behaviour timeline: one row per event id, batches with a result per event, and consumers."""

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event
from sqlmodel import col, select

from services.contacts.changes import ContactChanges
from services.contacts.db import ProcessedEvent
from services.contacts.timeline.models import TimelineEvent
from services.contacts.worker import worker_settings
from services.kit import clock
from services.kit.consumer import EventConsumer
from services.kit.contracts import EventEnvelope
from services.kit.contracts import contacts as topics
from services.kit.contracts import sequencer as sequencer_topics
from tests.contacts.support import Apps, create_contact, published, unique_email, worker_context

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


async def test_same_id_is_stored_once(contacts_app: Apps) -> None:
    app, client = contacts_app
    event = {"id": f"evt-{uuid.uuid4().hex}", "email": unique_email(), "type": "form_submitted"}

    first = await client.post("/events", json=event)
    second = await client.post("/events", json=event)

    assert (first.status_code, second.status_code) == (202, 202)
    assert (first.json()["status"], second.json()["status"]) == ("stored", "duplicate")
    assert second.json()["contact_id"] == first.json()["contact_id"]
    assert len(await published(app, topics.EVENT_RECORDED, event__id=event["id"])) == 1


@pytest.mark.parametrize("change", [{"type": "page_view"}, {"email": "someone-else@example.com"}, {"contact_id": "other"}])
async def test_reused_id_with_other_content_is_409(contacts_app: Apps, change: dict[str, str]) -> None:
    app, client = contacts_app
    event = {"id": f"evt-{uuid.uuid4().hex}", "email": unique_email(), "type": "form_submitted"}
    first = await client.post("/events", json=event)
    reused = {**event, **change}
    if "contact_id" in change:
        reused.pop("email")
        reused["contact_id"] = (await create_contact(client))["id"]

    second = await client.post("/events", json=reused)
    batch = await client.post("/events/batch", json={"events": [reused, {**event, "properties": {"retry": True}}]})

    assert first.status_code == 202
    assert second.status_code == 409
    assert [error["field"] for error in second.json()["errors"]] == ["id"]
    assert [item["status"] for item in batch.json()["items"]] == ["rejected", "duplicate"]
    assert len(await published(app, topics.EVENT_RECORDED, event__id=event["id"])) == 1


async def test_event_publishes_contract_payload(contacts_app: Apps) -> None:
    app, client = contacts_app
    contact = await create_contact(client)
    event_id = uuid.uuid4().hex

    await client.post("/events", json={"id": event_id, "contact_id": contact["id"], "type": "page_view", "occurred_at": T0.isoformat(), "properties": {"url": "/pricing"}})

    [payload] = await published(app, topics.EVENT_RECORDED, event__id=event_id)
    event = topics.EventRecorded.model_validate(payload).event
    assert (event.contact_id, event.type, event.occurred_at, event.properties) == (contact["id"], "page_view", T0, {"url": "/pricing"})


async def test_timeline_is_newest_first_by_occurred_at(contacts_app: Apps) -> None:
    _, client = contacts_app
    contact = await create_contact(client)
    for minutes in (5, 0, 10, 3):
        at = (T0 + timedelta(minutes=minutes)).isoformat()
        await client.post("/events", json={"id": f"t{minutes}-{contact['id']}", "contact_id": contact["id"], "type": "page_view", "occurred_at": at})

    first = (await client.get(f"/contacts/{contact['id']}/timeline", params={"limit": 3})).json()
    second = (await client.get(f"/contacts/{contact['id']}/timeline", params={"limit": 3, "cursor": first["next_cursor"]})).json()

    order = [event["occurred_at"][14:16] for event in first["items"] + second["items"]]
    assert order == ["10", "05", "03", "00"]
    assert second["next_cursor"] is None


async def test_event_for_unknown_contact_id_is_404(contacts_app: Apps) -> None:
    _, client = contacts_app

    response = await client.post("/events", json={"contact_id": uuid.uuid4().hex, "type": "page_view"})

    assert response.status_code == 404


async def test_event_far_in_future_is_422(contacts_app: Apps) -> None:
    _, client = contacts_app
    at = (clock.now() + timedelta(days=2)).isoformat()

    response = await client.post("/events", json={"email": unique_email(), "type": "page_view", "occurred_at": at})

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "occurred_at"


async def test_event_time_without_offset_is_422(contacts_app: Apps) -> None:
    _, client = contacts_app

    response = await client.post("/events", json={"email": unique_email(), "type": "page_view", "occurred_at": "2024-05-01T10:00:00"})

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "occurred_at"
    assert "UTC offset" in response.json()["errors"][0]["message"]


async def test_batch_answers_each_event(contacts_app: Apps) -> None:
    _, client = contacts_app
    contact = await create_contact(client)
    repeated = f"rep-{uuid.uuid4().hex}"
    events = [
        {"id": repeated, "contact_id": contact["id"], "type": "page_view"},
        {"email": "not-an-email", "type": "page_view"},
        {"id": repeated, "contact_id": contact["id"], "type": "page_view"},
        {"contact_id": contact["id"], "type": "Bad Type"},
        {"contact_id": uuid.uuid4().hex, "type": "page_view"},
        {"email": unique_email(), "type": "form_submitted"},
    ]

    response = await client.post("/events/batch", json={"events": events})

    items = response.json()["items"]
    assert response.status_code == 202
    assert [item["index"] for item in items] == list(range(6))
    assert [item["status"] for item in items] == ["stored", "rejected", "duplicate", "rejected", "rejected", "stored"]
    assert items[1]["error"]["errors"][0]["field"] == "email"
    assert items[3]["error"]["errors"][0]["field"] == "type"
    assert items[4]["error"]["status"] == 404


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"type": "email_bounced", "properties": {"bounce_class": "hard"}}, id="type"),
        pytest.param({"email": "other"}, id="email"),
        pytest.param({"type": "email_bounced", "email": "other", "properties": {"bounce_class": "hard"}}, id="type-and-email"),
    ],
)
async def test_batch_reused_id_is_409(contacts_app: Apps, change: dict[str, object]) -> None:
    app, client = contacts_app
    event_id = f"dupb-{uuid.uuid4().hex}"
    first = {"id": event_id, "email": unique_email("first"), "type": "page_view"}
    reused = {**first, **change}
    other_email = unique_email("second")
    if reused["email"] == "other":
        reused["email"] = other_email

    response = await client.post("/events/batch", json={"events": [first, reused]})

    items = response.json()["items"]
    assert response.status_code == 202
    assert [item["status"] for item in items] == ["stored", "rejected"]
    assert items[1]["error"]["status"] == 409
    assert [error["field"] for error in items[1]["error"]["errors"]] == ["id"]
    assert len(await published(app, topics.EVENT_RECORDED, event__id=event_id)) == 1
    listed = await client.get("/contacts", params={"email": other_email})
    assert listed.json()["items"] == []


async def test_batch_exact_repeat_is_duplicate(contacts_app: Apps) -> None:
    app, client = contacts_app
    contact = await create_contact(client)
    by_id, by_email = f"rep-{uuid.uuid4().hex}", f"rep-{uuid.uuid4().hex}"
    events = [
        {"id": by_id, "contact_id": contact["id"], "type": "page_view"},
        {"id": by_id, "contact_id": contact["id"], "type": "page_view", "properties": {"retry": True}},
        {"id": by_id, "email": contact["email"].upper(), "type": "page_view"},
        {"id": by_email, "email": unique_email("new"), "type": "form_submitted"},
    ]
    events.append({**events[3], "email": f" {events[3]['email']} "})

    items = (await client.post("/events/batch", json={"events": events})).json()["items"]

    assert [item["status"] for item in items] == ["stored", "duplicate", "duplicate", "stored", "duplicate"]
    assert [item["contact_id"] for item in items[:3]] == [contact["id"]] * 3
    assert items[4]["contact_id"] == items[3]["contact_id"]
    assert len(await published(app, topics.EVENT_RECORDED, event__id=by_id)) == 1
    assert len(await published(app, topics.EVENT_RECORDED, event__id=by_email)) == 1


async def test_batch_repeat_of_rejected_event(contacts_app: Apps) -> None:
    _, client = contacts_app
    event_id = f"rep-{uuid.uuid4().hex}"
    missing = {"id": event_id, "contact_id": uuid.uuid4().hex, "type": "page_view"}
    events = [missing, {**missing}, {**missing, "type": "form_submitted"}]

    items = (await client.post("/events/batch", json={"events": events})).json()["items"]

    assert [item["status"] for item in items] == ["rejected", "rejected", "rejected"]
    assert [item["error"]["status"] for item in items] == [404, 404, 409]


@pytest.mark.parametrize(
    "occurred_at",
    ["0001-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00", "1969-12-31T23:59:59Z", "1970-01-01T00:30:00+01:00"],
)
async def test_event_before_1970_is_422(contacts_app: Apps, occurred_at: str) -> None:
    _, client = contacts_app
    event = {"email": unique_email(), "type": "page_view", "occurred_at": occurred_at}

    single = await client.post("/events", json=event)
    batch = await client.post("/events/batch", json={"events": [event]})

    assert single.status_code == 422, single.text
    assert [error["field"] for error in single.json()["errors"]] == ["occurred_at"]
    [item] = batch.json()["items"]
    assert item["status"] == "rejected"
    assert [error["field"] for error in item["error"]["errors"]] == ["occurred_at"]


async def test_event_at_1970_is_stored(contacts_app: Apps) -> None:
    _, client = contacts_app

    response = await client.post("/events", json={"email": unique_email(), "type": "page_view", "occurred_at": "1970-01-01T00:00:00Z"})

    assert response.status_code == 202, response.text
    assert response.json()["status"] == "stored"


def _nested(depth: int) -> dict[str, object]:
    """Return properties whose objects and arrays are nested `depth` levels deep."""
    value: object = 1
    for level in range(depth - 1):
        value = {"a": value} if level % 2 else [value]
    return {"a": value}


@pytest.mark.parametrize("depth", [33, 300, 900])
async def test_deeply_nested_properties_are_422(contacts_app: Apps, depth: int) -> None:
    _, client = contacts_app
    # Written by hand, because Python's JSON encoder stops at its recursion limit near 1,000 levels.
    properties = '{"a":' * depth + "1" + "}" * depth
    event = f'{{"email": "{unique_email()}", "type": "page_view", "properties": {properties}}}'
    headers = {"content-type": "application/json"}

    single = await client.post("/events", content=event, headers=headers)
    batch = await client.post("/events/batch", content=f'{{"events": [{event}]}}', headers=headers)

    assert single.status_code == 422, single.text
    assert [error["field"] for error in single.json()["errors"]] == ["properties"]
    [item] = batch.json()["items"]
    assert item["status"] == "rejected"
    assert [error["field"] for error in item["error"]["errors"]] == ["properties"]


async def test_properties_32_levels_deep_are_stored(contacts_app: Apps) -> None:
    _, client = contacts_app
    properties = _nested(32)

    response = await client.post("/events", json={"email": unique_email(), "type": "page_view", "properties": properties})

    assert response.status_code == 202, response.text
    timeline = (await client.get(f"/contacts/{response.json()['contact_id']}/timeline")).json()
    assert timeline["items"][0]["properties"] == properties


async def test_batch_creates_one_contact_per_address(contacts_app: Apps) -> None:
    _, client = contacts_app
    email = unique_email("batch")
    events = [{"email": spelled, "type": "page_view"} for spelled in (email, email.upper(), f" {email} ")]

    items = (await client.post("/events/batch", json={"events": events})).json()["items"]

    assert len({item["contact_id"] for item in items}) == 1


async def test_batch_ingest_chunks(contacts_app: Apps) -> None:
    """1,000 events for 200 new contacts go in one transaction per chunk; the rate is printed.

    Every event of one transaction gets the same received_at, so the distinct values count the
    transactions. Speed itself is measured by the benchmarks, not asserted here.
    """
    app, client = contacts_app
    emails = [unique_email("speed") for _ in range(200)]
    events = [
        {"id": uuid.uuid4().hex, "email": emails[index % 200], "type": "page_view", "properties": {"url": f"/p/{index}"}}
        for index in range(1000)
    ]

    started = time.perf_counter()
    response = await client.post("/events/batch", json={"events": events})
    elapsed = time.perf_counter() - started

    assert all(item["status"] == "stored" for item in response.json()["items"])
    async with app.state.db.session() as session:
        query = select(TimelineEvent.received_at).where(col(TimelineEvent.id).in_([event["id"] for event in events]))
        transactions = set((await session.exec(query)).all())
    chunk = app.state.settings.event_batch_chunk
    assert len(transactions) == -(-len(events) // chunk)
    rate = len(events) / elapsed
    print(f"batch ingest: {len(events)} events in {elapsed:.2f} s = {rate:.0f} events/s")


async def test_engagement_consumer_records_timeline_event(contacts_app: Apps) -> None:
    app, client = contacts_app
    contact = await create_contact(client)
    consumer = EventConsumer(ProcessedEvent, worker_settings(app.state.settings).functions[0].coroutine.__self__.handlers)
    payload = sequencer_topics.EmailEngagement(
        event_id=f"eng-{uuid.uuid4().hex}", contact_id=contact["id"], type="email_bounced", occurred_at=T0,
        properties={"message_id": "m9", "bounce_class": "hard"},
    )
    envelope = EventEnvelope(
        id=uuid.uuid4().hex, topic=sequencer_topics.EMAIL_ENGAGEMENT, producer="sequencer", occurred_at=T0,
        payload=payload.model_dump(mode="json"),
    )

    first = await consumer.apply(app.state.db, envelope, worker_context(app))
    second = await consumer.apply(app.state.db, envelope, worker_context(app))

    assert (first, second) == ("applied", "duplicate")
    timeline = (await client.get(f"/contacts/{contact['id']}/timeline")).json()["items"]
    assert [event["id"] for event in timeline] == [payload.event_id]
    assert (await client.get(f"/contacts/{contact['id']}/sendability")).json()["reason"] == "hard_bounce"


def _engagement(contact_id: str, event_type: str, event_id: str | None = None, **properties: object) -> EventEnvelope:
    payload = sequencer_topics.EmailEngagement(
        event_id=event_id or uuid.uuid4().hex, contact_id=contact_id, type=event_type, occurred_at=T0, properties=properties
    )
    return EventEnvelope(
        id=uuid.uuid4().hex, topic=sequencer_topics.EMAIL_ENGAGEMENT, producer="sequencer", occurred_at=T0,
        payload=payload.model_dump(mode="json"),
    )


async def test_engagement_batch_is_stored_together(contacts_app: Apps) -> None:
    app, client = contacts_app
    consumer = worker_settings(app.state.settings).functions[0].coroutine.__self__
    contacts = [await create_contact(client) for _ in range(20)]
    sent = [_engagement(contact["id"], "email_sent", message_id=f"m{index}") for index, contact in enumerate(contacts)]
    bounced = _engagement(contacts[1]["id"], "email_bounced", message_id="m1", bounce_class="hard")
    repeated = _engagement(contacts[0]["id"], "email_sent", event_id=sent[0].payload["event_id"], message_id="m0")
    unknown = _engagement(uuid.uuid4().hex, "email_opened")
    statements: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    engine = app.state.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        outcomes = await consumer.apply_batch(app.state.db, [*sent, bounced, repeated, unknown], worker_context(app))
    finally:
        event.remove(engine, "before_cursor_execute", count)

    assert outcomes == {"applied": 23}
    assert consumer.split_batches == 0
    first = (await client.get(f"/contacts/{contacts[0]['id']}/timeline")).json()["items"]
    assert [item["type"] for item in first] == ["email_sent"]
    second = (await client.get(f"/contacts/{contacts[1]['id']}/timeline")).json()["items"]
    assert sorted(item["type"] for item in second) == ["email_bounced", "email_sent"]
    assert (await client.get(f"/contacts/{contacts[1]['id']}/sendability")).json()["reason"] == "hard_bounce"
    # One event at a time, each engagement event took several statements of its own.
    assert len(statements) < 23, len(statements)


async def test_engagement_for_erased_contact_is_dropped(contacts_app: Apps) -> None:
    app, _ = contacts_app
    handlers = worker_settings(app.state.settings).functions[0].coroutine.__self__.handlers
    consumer = EventConsumer(ProcessedEvent, handlers)
    payload = sequencer_topics.EmailEngagement(event_id=uuid.uuid4().hex, contact_id=uuid.uuid4().hex, type="email_opened", occurred_at=T0)
    envelope = EventEnvelope(
        id=uuid.uuid4().hex, topic=sequencer_topics.EMAIL_ENGAGEMENT, producer="sequencer", occurred_at=T0,
        payload=payload.model_dump(mode="json"),
    )

    assert await consumer.apply(app.state.db, envelope, worker_context(app)) == "applied"
    async with app.state.db.session() as session:
        from services.contacts.people.models import Contact

        assert await session.get(Contact, payload.contact_id) is None
    assert ContactChanges().empty


async def test_concurrent_batches_share_new_contact(contacts_app: Apps) -> None:
    import asyncio

    _, client = contacts_app
    email = unique_email("race")
    batches = [{"events": [{"email": email, "type": "page_view"} for _ in range(3)]} for _ in range(4)]

    responses = await asyncio.gather(*(client.post("/events/batch", json=batch) for batch in batches))

    items = [item for response in responses for item in response.json()["items"]]
    assert {item["status"] for item in items} == {"stored"}
    assert len({item["contact_id"] for item in items}) == 1
