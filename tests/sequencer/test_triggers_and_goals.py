"""Triggers enrol contacts from the contacts service's events; goals and opt-outs take them out."""

import uuid
from datetime import UTC, datetime, timedelta

import httpx
from sqlmodel import select

from services.kit import clock
from services.sequencer.enrolments.models import Enrolment
from services.sequencer.enrolments.service import exit_enrolment
from services.sequencer.enrolments.runtime import Runtime
from tests.sequencer.support import (
    CONSUMER,
    Sink,
    add_contact,
    deliver,
    deliver_batch,
    live_through,
    snapshot,
    timeline_event,
)

START = datetime(2024, 6, 3, 8, 0, tzinfo=UTC)


async def make_template(client: httpx.AsyncClient, subject: str) -> str:
    response = await client.post("/templates", json={"name": subject, "subject": subject, "html": f"<p>{subject}</p>"})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def make_sequence(client: httpx.AsyncClient, trigger: dict[str, object], **extra: object) -> str:
    first = await make_template(client, f"First {uuid.uuid4().hex[:6]}")
    second = await make_template(client, f"Second {uuid.uuid4().hex[:6]}")
    third = await make_template(client, f"Third {uuid.uuid4().hex[:6]}")
    definition = {
        "name": "Follow-up",
        "trigger": trigger,
        "steps": [
            {"id": "e1", "email": {"template_id": first}},
            {"wait": {"days": 2}},
            {"id": "e2", "email": {"template_id": second}},
            {"wait": {"days": 2}},
            {"id": "e3", "email": {"template_id": third}},
        ],
        **extra,
    }
    created = await client.post("/sequences", json=definition)
    assert created.status_code == 201, created.text
    sequence_id = str(created.json()["id"])
    assert (await client.post(f"/sequences/{sequence_id}/activate")).status_code == 200
    return sequence_id


async def enrolments_of(runtime: Runtime, sequence_id: str, contact_id: str) -> list[Enrolment]:
    async with runtime.db.session() as session:
        query = select(Enrolment).where(Enrolment.sequence_id == sequence_id, Enrolment.contact_id == contact_id)
        return list((await session.exec(query)).all())


PRICING = {"type": "event", "event_type": "page_view", "conditions": [{"property": "url", "op": "contains", "value": "/pricing"}]}


async def test_pricing_page_visit_enrols(api, runtime: Runtime, sink: Sink) -> None:
    _, client = api
    clock.freeze(START)
    sequence_id = await make_sequence(client, PRICING)
    visitor = await add_contact(runtime, "visitor@example.com")
    browser = await add_contact(runtime, "browser@example.com")

    await deliver(runtime, "contact.event_recorded", timeline_event(visitor, "page_view", {"url": "https://acme.test/pricing?plan=pro"}))
    await deliver(runtime, "contact.event_recorded", timeline_event(browser, "page_view", {"url": "https://acme.test/blog"}))

    enrolled = await enrolments_of(runtime, sequence_id, visitor)
    assert [(item.state, item.trigger.split(":")[0]) for item in enrolled] == [("active", "event")]
    assert await enrolments_of(runtime, sequence_id, browser) == []
    await live_through(runtime, START, sequence_id=sequence_id)
    assert len(sink.handler.to("visitor@example.com")) == 1
    assert sink.handler.to("browser@example.com") == []


async def test_batch_enrols_new_and_skips_erased(api, runtime: Runtime) -> None:
    _, client = api
    clock.freeze(START)
    sequence_id = await make_sequence(client, PRICING)
    known, leaving, new = await add_contact(runtime), await add_contact(runtime), uuid.uuid4().hex
    splits = CONSUMER.split_batches
    visit = {"url": "https://acme.test/pricing"}

    outcomes = await deliver_batch(runtime, [
        ("contact.event_recorded", timeline_event(known, "page_view", visit)),
        ("contact.erased", {"contact_id": leaving}),
        ("contact.changed", snapshot(new, "new@example.com")),
        ("contact.event_recorded", timeline_event(leaving, "page_view", visit)),
        ("contact.event_recorded", timeline_event(new, "page_view", visit)),
        ("contact.event_recorded", timeline_event(known, "page_view", visit)),
    ])

    assert outcomes == {"applied": 6}
    assert CONSUMER.split_batches == splits
    assert [item.state for item in await enrolments_of(runtime, sequence_id, known)] == ["active"]
    assert [item.state for item in await enrolments_of(runtime, sequence_id, new)] == ["active"]
    assert await enrolments_of(runtime, sequence_id, leaving) == []


async def test_batch_sees_the_enrolments_its_own_events_made(api, runtime: Runtime) -> None:
    _, client = api
    clock.freeze(START)
    goal = {"type": "event", "event_type": "form_submitted", "conditions": [{"property": "form", "value": "demo"}]}
    sequence_id = await make_sequence(client, PRICING, goal=goal)
    converted, opted_out, browsing = await add_contact(runtime), await add_contact(runtime), await add_contact(runtime)
    visit = {"url": "https://acme.test/pricing"}
    unsubscribe = {"contact_id": opted_out, "topic": None, "status": "unsubscribed", "source": "api", "at": START.isoformat()}

    outcomes = await deliver_batch(runtime, [
        ("contact.event_recorded", timeline_event(converted, "page_view", visit)),
        ("contact.event_recorded", timeline_event(opted_out, "page_view", visit)),
        ("contact.event_recorded", timeline_event(browsing, "page_view", visit)),
        ("contact.event_recorded", timeline_event(converted, "form_submitted", {"form": "demo"})),
        ("consent.changed", unsubscribe),
        ("contact.event_recorded", timeline_event(browsing, "page_view", visit)),
    ])

    assert outcomes == {"applied": 6}
    ended = {
        contact_id: [(item.state, item.exit_reason) for item in await enrolments_of(runtime, sequence_id, contact_id)]
        for contact_id in (converted, opted_out, browsing)
    }
    assert ended == {
        converted: [("exited", "goal_reached")],
        opted_out: [("exited", "unsubscribed")],
        browsing: [("active", None)],
    }


async def test_exit_keeps_completed_enrolment(api, runtime: Runtime) -> None:
    _, client = api
    clock.freeze(START)
    sequence_id = await make_sequence(client, PRICING)
    contact_id = await add_contact(runtime)
    await deliver(runtime, "contact.event_recorded", timeline_event(contact_id, "page_view", {"url": "/pricing"}))

    async with runtime.db.session() as session:
        stale = (await session.exec(select(Enrolment).where(Enrolment.contact_id == contact_id))).one()
        # Another worker completes the enrolment after this session read it.
        async with runtime.db.session() as other:
            done = (await other.exec(select(Enrolment).where(Enrolment.id == stale.id))).one()
            done.state, done.finished_at = "completed", START
            await other.commit()
        ended = await exit_enrolment(session, stale, "unsubscribed", START)
        await session.commit()

    assert ended is False
    assert [(item.state, item.exit_reason) for item in await enrolments_of(runtime, sequence_id, contact_id)] == [("completed", None)]


async def test_second_visit_does_not_enrol_twice(api, runtime: Runtime) -> None:
    _, client = api
    clock.freeze(START)
    sequence_id = await make_sequence(client, PRICING)
    visitor = await add_contact(runtime)

    for _ in range(2):
        await deliver(runtime, "contact.event_recorded", timeline_event(visitor, "page_view", {"url": "/pricing"}))

    assert len(await enrolments_of(runtime, sequence_id, visitor)) == 1


async def test_reentry_after_days(api, runtime: Runtime) -> None:
    _, client = api
    clock.freeze(START)
    sequence_id = await make_sequence(client, PRICING, reentry={"mode": "after", "days": 30})
    visitor = await add_contact(runtime)
    await deliver(runtime, "contact.event_recorded", timeline_event(visitor, "page_view", {"url": "/pricing"}))
    await live_through(runtime, START + timedelta(days=10), sequence_id=sequence_id)

    clock.freeze(START + timedelta(days=20))
    await deliver(runtime, "contact.event_recorded", timeline_event(visitor, "page_view", {"url": "/pricing"}))
    assert [item.entry for item in await enrolments_of(runtime, sequence_id, visitor)] == [1]

    clock.freeze(START + timedelta(days=31))
    await deliver(runtime, "contact.event_recorded", timeline_event(visitor, "page_view", {"url": "/pricing"}))
    assert sorted(item.entry for item in await enrolments_of(runtime, sequence_id, visitor)) == [1, 2]


async def test_reaching_sql_stops_remaining_emails(api, runtime: Runtime, sink: Sink) -> None:
    _, client = api
    clock.freeze(START)
    sequence_id = await make_sequence(client, {"type": "manual"}, goal={"type": "stage_reached", "stage": "sql"})
    contact_id = await add_contact(runtime, "sql-bound@example.com", stage="mql")
    assert (await client.post(f"/sequences/{sequence_id}/enrollments", json={"contact_id": contact_id})).status_code == 201

    await live_through(runtime, START + timedelta(days=1), sequence_id=sequence_id)
    assert len(sink.handler.to("sql-bound@example.com")) == 1
    changed = {"contact_id": contact_id, "from_stage": "mql", "to_stage": "sql", "at": clock.now().isoformat(), "reason": "accepted"}
    await deliver(runtime, "stage.changed", changed)
    await live_through(runtime, START + timedelta(days=30), sequence_id=sequence_id)

    assert len(sink.handler.to("sql-bound@example.com")) == 1
    [enrolment] = await enrolments_of(runtime, sequence_id, contact_id)
    assert (enrolment.state, enrolment.exit_reason) == ("exited", "goal_reached")
    report = (await client.get(f"/sequences/{sequence_id}/report")).json()
    assert report["goal_reached"] == 1
    assert [step["sent"] for step in report["steps"]] == [1, 0, 0]


async def test_goal_checked_again_at_send_time(api, runtime: Runtime, sink: Sink) -> None:
    """A stage change the consumer has not seen as stage.changed still stops the send (contact.changed carries it)."""
    _, client = api
    clock.freeze(START)
    sequence_id = await make_sequence(client, {"type": "manual"}, goal={"type": "stage_reached", "stage": "sql"})
    contact_id = await add_contact(runtime, "late-sql@example.com", stage="lead")
    await client.post(f"/sequences/{sequence_id}/enrollments", json={"contact_id": contact_id})
    await live_through(runtime, START, sequence_id=sequence_id)

    async with runtime.db.session() as session:
        from services.sequencer.facts.models import ContactFact

        fact = await session.get(ContactFact, contact_id)
        assert fact is not None
        fact.stage = "opportunity"
        await session.commit()
    await live_through(runtime, START + timedelta(days=30), sequence_id=sequence_id)

    assert len(sink.handler.to("late-sql@example.com")) == 1
    [enrolment] = await enrolments_of(runtime, sequence_id, contact_id)
    assert enrolment.exit_reason == "goal_reached"


async def test_stage_trigger_and_segment_trigger(api, runtime: Runtime) -> None:
    _, client = api
    clock.freeze(START)
    by_stage = await make_sequence(client, {"type": "stage_reached", "stage": "mql"})
    segment_id = f"seg-{uuid.uuid4().hex[:8]}"
    by_segment = await make_sequence(client, {"type": "segment_entered", "segment_id": segment_id})
    contact_id = await add_contact(runtime, stage="lead")

    await deliver(runtime, "stage.changed", {"contact_id": contact_id, "from_stage": "lead", "to_stage": "mql", "at": START.isoformat()})
    await deliver(runtime, "segment.entered", {"segment_id": segment_id, "contact_id": contact_id, "at": START.isoformat()})

    assert len(await enrolments_of(runtime, by_stage, contact_id)) == 1
    assert len(await enrolments_of(runtime, by_segment, contact_id)) == 1


async def test_segment_left_goal(api, runtime: Runtime, sink: Sink) -> None:
    _, client = api
    clock.freeze(START)
    segment_id = f"seg-{uuid.uuid4().hex[:8]}"
    sequence_id = await make_sequence(
        client, {"type": "segment_entered", "segment_id": segment_id}, goal={"type": "segment_left", "segment_id": segment_id}
    )
    contact_id = await add_contact(runtime, "leaver@example.com")
    await deliver(runtime, "segment.entered", {"segment_id": segment_id, "contact_id": contact_id, "at": START.isoformat()})
    await live_through(runtime, START, sequence_id=sequence_id)

    left_at = (START + timedelta(hours=1)).isoformat()
    await deliver(runtime, "segment.left", {"segment_id": segment_id, "contact_id": contact_id, "at": left_at})
    await live_through(runtime, START + timedelta(days=30), sequence_id=sequence_id)

    assert len(sink.handler.to("leaver@example.com")) == 1
    [enrolment] = await enrolments_of(runtime, sequence_id, contact_id)
    assert enrolment.exit_reason == "goal_reached"


async def test_event_goal_after_enrolment(api, runtime: Runtime) -> None:
    _, client = api
    clock.freeze(START)
    goal = {"type": "event", "event_type": "form_submitted", "conditions": [{"property": "form", "value": "demo"}]}
    sequence_id = await make_sequence(client, {"type": "manual"}, goal=goal)
    contact_id = await add_contact(runtime)
    await client.post(f"/sequences/{sequence_id}/enrollments", json={"contact_id": contact_id})

    await deliver(runtime, "contact.event_recorded", timeline_event(contact_id, "form_submitted", {"form": "newsletter"}))
    assert (await enrolments_of(runtime, sequence_id, contact_id))[0].state == "active"
    await deliver(runtime, "contact.event_recorded", timeline_event(contact_id, "form_submitted", {"form": "demo"}))
    assert (await enrolments_of(runtime, sequence_id, contact_id))[0].exit_reason == "goal_reached"


async def test_unsubscribe_event_takes_contact_out(api, runtime: Runtime, sink: Sink) -> None:
    _, client = api
    clock.freeze(START)
    sequence_id = await make_sequence(client, {"type": "manual"})
    contact_id = await add_contact(runtime, "bye@example.com")
    await client.post(f"/sequences/{sequence_id}/enrollments", json={"contact_id": contact_id})
    await live_through(runtime, START, sequence_id=sequence_id)

    await deliver(runtime, "contact.event_recorded", timeline_event(contact_id, "unsubscribed", {"source": "one_click"}))
    await live_through(runtime, START + timedelta(days=30), sequence_id=sequence_id)

    assert len(sink.handler.to("bye@example.com")) == 1
    [enrolment] = await enrolments_of(runtime, sequence_id, contact_id)
    assert (enrolment.state, enrolment.exit_reason) == ("exited", "unsubscribed")
    again = await client.post(f"/sequences/{sequence_id}/enrollments", json={"contact_id": contact_id})
    assert again.status_code == 409


async def test_consent_changed_takes_contact_out(api, runtime: Runtime, sink: Sink) -> None:
    _, client = api
    clock.freeze(START)
    sequence_id = await make_sequence(client, {"type": "manual"})
    contact_id = await add_contact(runtime, "complainer@example.com")
    await client.post(f"/sequences/{sequence_id}/enrollments", json={"contact_id": contact_id})
    await live_through(runtime, START, sequence_id=sequence_id)

    consent = {"contact_id": contact_id, "topic": None, "status": "complained", "source": "feedback_loop", "at": START.isoformat()}
    await deliver(runtime, "consent.changed", consent)
    await live_through(runtime, START + timedelta(days=30), sequence_id=sequence_id)

    assert len(sink.handler.to("complainer@example.com")) == 1
    assert (await enrolments_of(runtime, sequence_id, contact_id))[0].exit_reason == "complained"


async def test_stale_consent_event_is_ignored(api, runtime: Runtime, sink: Sink) -> None:
    """An unsubscribe older than the resubscribe that arrived first changes nothing."""
    _, client = api
    clock.freeze(START)
    sequence_id = await make_sequence(client, {"type": "manual"})
    contact_id = await add_contact(runtime, "resubscribed@example.com")
    newer = {"contact_id": contact_id, "topic": None, "status": "subscribed", "source": "form", "at": START.isoformat()}
    older = {**newer, "status": "unsubscribed", "at": (START - timedelta(days=1)).isoformat()}
    await deliver(runtime, "consent.changed", newer)
    await deliver(runtime, "consent.changed", older)

    response = await client.post(f"/sequences/{sequence_id}/enrollments", json={"contact_id": contact_id})
    assert response.status_code == 201, response.text


async def test_topic_unsubscribe_skips_only_that_topic(api, runtime: Runtime, sink: Sink) -> None:
    _, client = api
    clock.freeze(START)
    news = await make_template(client, "News of the week")
    offer = await make_template(client, "An offer for you")
    definition = {
        "name": "Topics",
        "trigger": {"type": "manual"},
        "steps": [{"email": {"template_id": news, "topic": "newsletter"}}, {"wait": {"hours": 1}}, {"email": {"template_id": offer}}],
    }
    sequence_id = (await client.post("/sequences", json=definition)).json()["id"]
    await client.post(f"/sequences/{sequence_id}/activate")
    contact_id = await add_contact(runtime, "topics@example.com", consent={"status": "subscribed", "topics": {"newsletter": "unsubscribed"}})

    await client.post(f"/sequences/{sequence_id}/enrollments", json={"contact_id": contact_id})
    await live_through(runtime, START + timedelta(days=1), sequence_id=sequence_id)

    assert [message["Subject"] for message in sink.handler.to("topics@example.com")] == ["An offer for you"]


async def test_wait_for_event_ends_early(api, runtime: Runtime, sink: Sink) -> None:
    _, client = api
    clock.freeze(START)
    first = await make_template(client, "Did you see the demo?")
    after = await make_template(client, "Thanks for downloading")
    until_event = {"until_event": {"event_type": "content_downloaded"}, "timeout": {"days": 7}}
    definition = {
        "name": "Wait for download",
        "trigger": {"type": "manual"},
        "steps": [{"email": {"template_id": first}}, {"wait": until_event}, {"email": {"template_id": after}}],
    }
    sequence_id = (await client.post("/sequences", json=definition)).json()["id"]
    await client.post(f"/sequences/{sequence_id}/activate")
    contact_id = await add_contact(runtime, "downloader@example.com")
    await client.post(f"/sequences/{sequence_id}/enrollments", json={"contact_id": contact_id})
    await live_through(runtime, START, sequence_id=sequence_id)

    # An event the wait does not name leaves it waiting.
    clock.freeze(START + timedelta(hours=2))
    await deliver(runtime, "contact.event_recorded", timeline_event(contact_id, "page_viewed", {"path": "/pricing"}))
    await live_through(runtime, START + timedelta(hours=2), sequence_id=sequence_id)
    assert [message["Subject"] for message in sink.handler.to("downloader@example.com")] == ["Did you see the demo?"]

    clock.freeze(START + timedelta(hours=5))
    await deliver(runtime, "contact.event_recorded", timeline_event(contact_id, "content_downloaded", {"asset": "ebook"}))
    await live_through(runtime, START + timedelta(hours=5), sequence_id=sequence_id)

    received = sink.handler.to("downloader@example.com")
    assert [message["Subject"] for message in received] == ["Did you see the demo?", "Thanks for downloading"]
