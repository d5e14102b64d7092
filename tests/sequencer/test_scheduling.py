"""Send times through the whole service: send windows, DST, fixed dates, quiet hours and the frequency cap.

Each test lives through the schedule with a frozen clock and reads the Date header of every email
the SMTP sink received, which the sequencer sets to the instant it sent.
"""

import os
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from services.kit import clock
from services.kit.db import Database
from services.sequencer.enrolments.runtime import Runtime, beat, build_runtime
from services.sequencer.enrolments.service import enrol
from services.sequencer.enrolments.wakeups import attach_queue
from services.sequencer.facts.service import get_facts
from services.sequencer.sequences.store import activate_sequence, create_sequence, definition_of, get_sequence, get_version
from services.sequencer.templates.store import TemplateIn, create_template
from tests.sequencer.conftest import Isolated
from tests.sequencer.support import Sink, add_contact, live_through

Z = UTC


def sent_times(sink: Sink, address: str) -> list[datetime]:
    return [parsedate_to_datetime(message["Date"]).astimezone(UTC) for message in sink.handler.to(address)]


async def start_sequence(runtime: Runtime, steps: list[dict[str, Any]], **extra: Any) -> str:
    """Create templates for the email steps (named by their `template`), the sequence, and activate it."""
    async with runtime.db.session() as session:
        for step in steps:
            if "email" in step and "template_id" not in step["email"]:
                template = await create_template(session, TemplateIn(name="t", subject=step["email"].pop("subject"), html="<p>Hello</p>"))
                step["email"]["template_id"] = template.id
        sequence, _ = await create_sequence(session, {"name": "Schedule", "trigger": {"type": "manual"}, "steps": steps, **extra})
        await session.flush()
        await activate_sequence(session, sequence.id)
        await session.commit()
        return sequence.id


async def enrol_now(runtime: Runtime, sequence_id: str, contact_id: str) -> None:
    async with runtime.db.session() as session:
        attach_queue(session, runtime.redis, runtime.settings.namespace)
        sequence = await get_sequence(session, sequence_id)
        definition = definition_of(await get_version(session, sequence_id, sequence.current_version))
        fact = await get_facts(session, contact_id)
        assert fact is not None
        await enrol(session, sequence, definition, fact, trigger="test", now=clock.now())
        await session.commit()


# --- send windows after the delay ---------------------------------------------------------------------


async def test_send_window_applies_after_delay(runtime: Runtime, sink: Sink) -> None:
    """Berlin contact enrolled Tue 2024-06-04 10:00: E1 now, E2 after 5 days on Mon-Fri 09:00, E3 a day later."""
    window = {"weekdays": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00"}
    steps = [
        {"email": {"subject": "E1"}},
        {"wait": {"days": 5}},
        {"email": {"subject": "E2", "send_window": window}},
        {"wait": {"days": 1}},
        {"email": {"subject": "E3", "send_window": window}},
    ]
    enrolled_at = datetime.fromisoformat("2024-06-04T10:00:00+02:00")
    clock.freeze(enrolled_at)
    sequence_id = await start_sequence(runtime, steps)
    contact_id = await add_contact(runtime, "berlin@example.com", timezone="Europe/Berlin")

    await enrol_now(runtime, sequence_id, contact_id)
    await live_through(runtime, enrolled_at + timedelta(days=14), sequence_id=sequence_id)

    times = sent_times(sink, "berlin@example.com")
    assert [message["Subject"] for message in sink.handler.to("berlin@example.com")] == ["E1", "E2", "E3"]
    assert times == [
        datetime(2024, 6, 4, 8, 0, tzinfo=Z),
        datetime(2024, 6, 10, 7, 0, tzinfo=Z),
        datetime(2024, 6, 11, 7, 0, tzinfo=Z),
    ]
    assert all(later - earlier >= timedelta(hours=1) for earlier, later in zip(times, times[1:], strict=False))
    assert not [moment for moment in times if moment.date() in (datetime(2024, 6, 8).date(), datetime(2024, 6, 9).date())]


# --- DST and time zones, whatever the process and database session time zones -----------------------


@pytest.fixture(params=["process-utc", "process-kolkata"])
def process_timezone(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test with the process time zone set to UTC or to Asia/Kolkata."""
    previous = os.environ.get("TZ")
    os.environ["TZ"] = "UTC" if request.param == "process-utc" else "Asia/Kolkata"
    time.tzset()
    yield request.param
    if previous is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = previous
    time.tzset()


@pytest.fixture
async def chicago_runtime(isolated: Isolated, sink: Sink) -> AsyncIterator[Runtime]:
    """A runtime whose database sessions use America/Chicago as their time zone (PostgreSQL only)."""
    settings = isolated.settings(smtp_port=sink.port)
    db = Database(settings.database_url)
    if db.dialect == "postgresql":
        await db.engine.dispose()
        db.engine = create_async_engine(settings.database_url, connect_args={"server_settings": {"timezone": "America/Chicago"}})
        db.sessions = async_sessionmaker(db.engine, class_=AsyncSession, expire_on_commit=False)
        async with db.session() as session:
            assert (await session.exec(text("SHOW timezone"))).one()[0] == "America/Chicago"  # type: ignore[call-overload]
    running = build_runtime(settings, db=db)
    await beat(running)
    yield running
    await running.close()
    await db.dispose()


DST_CASES = [
    ("next day 09:00 into EDT", "2024-03-09T12:00:00-05:00", {"days": 1, "at": "09:00"}, "2024-03-10T13:00:00+00:00"),
    ("next day 09:00 into EST", "2024-11-02T12:00:00-04:00", {"days": 1, "at": "09:00"}, "2024-11-03T14:00:00+00:00"),
    ("24 hours are elapsed time", "2024-03-09T12:00:00-05:00", {"hours": 24}, "2024-03-10T17:00:00+00:00"),
    ("until a local date", "2024-06-20T12:00:00-04:00", {"until": "2024-07-01T09:00:00"}, "2024-07-01T13:00:00+00:00"),
]


@pytest.mark.parametrize(("case", "enrolled", "wait", "expected"), DST_CASES, ids=[case[0] for case in DST_CASES])
async def test_wait_across_dst(
    process_timezone: str, chicago_runtime: Runtime, sink: Sink, case: str, enrolled: str, wait: dict[str, Any], expected: str
) -> None:
    runtime = chicago_runtime
    slug = "".join(character if character.isalnum() else "-" for character in case)
    address = f"ny-{process_timezone}-{slug}@example.com"
    enrolled_at = datetime.fromisoformat(enrolled)
    clock.freeze(enrolled_at)
    sequence_id = await start_sequence(runtime, [{"wait": wait}, {"email": {"subject": case}}])
    contact_id = await add_contact(runtime, address, timezone="America/New_York")

    await enrol_now(runtime, sequence_id, contact_id)
    stops = await live_through(runtime, enrolled_at + timedelta(days=30), sequence_id=sequence_id)

    assert sent_times(sink, address) == [datetime.fromisoformat(expected)]
    assert stops == [datetime.fromisoformat(expected)]


async def test_fixed_date_reads_back_unchanged(api, runtime: Runtime) -> None:
    """A wait until 2024-03-10T10:00 New York time keeps its wall-clock value and falls due at 14:00Z (EDT)."""
    _, client = api
    clock.freeze(datetime(2024, 3, 1, tzinfo=UTC))
    template = await client.post("/templates", json={"name": "launch", "subject": "Launch", "html": "<p>We launch today</p>"})
    steps = [
        {"id": "local", "wait": {"until": "2024-03-10T10:00:00"}},
        {"id": "offset", "wait": {"until": "2024-03-10T10:00:00-04:00"}},
        {"email": {"template_id": template.json()["id"]}},
    ]
    body = {"name": "Launch day", "trigger": {"type": "manual"}, "timezone": "America/New_York", "steps": steps}
    created = (await client.post("/sequences", json=body)).json()
    await client.post(f"/sequences/{created['id']}/activate")
    contact_id = await add_contact(runtime)

    enrolled = (await client.post(f"/sequences/{created['id']}/enrollments", json={"contact_id": contact_id})).json()
    read = (await client.get(f"/sequences/{created['id']}")).json()

    assert read["definition"]["steps"][0]["wait"]["until"] == "2024-03-10T10:00:00"
    assert read["definition"]["steps"][1]["wait"]["until"] == "2024-03-10T10:00:00-04:00"
    assert datetime.fromisoformat(enrolled["steps"][0]["due_at"]) == datetime(2024, 3, 10, 14, 0, tzinfo=UTC)


# --- quiet hours and the frequency cap defer, never drop ------------------------------------------------


async def test_quiet_hours_defer_planned_send(runtime: Runtime, sink: Sink) -> None:
    enrolled_at = datetime.fromisoformat("2024-06-04T22:30:00+02:00")
    clock.freeze(enrolled_at)
    sequence_id = await start_sequence(
        runtime, [{"email": {"subject": "Late signup"}}], quiet_hours={"start": "21:00", "end": "08:00"}
    )
    contact_id = await add_contact(runtime, "night-owl@example.com", timezone="Europe/Berlin")

    await enrol_now(runtime, sequence_id, contact_id)
    await live_through(runtime, enrolled_at + timedelta(days=2), sequence_id=sequence_id)

    assert sent_times(sink, "night-owl@example.com") == [datetime.fromisoformat("2024-06-05T08:00:00+02:00")]


async def test_quiet_hours_checked_again_at_send_time(runtime: Runtime, sink: Sink) -> None:
    """The contact moved to Berlin after the send was planned: 20:00Z is 22:00 there, inside quiet hours."""
    enrolled_at = datetime(2024, 6, 4, 12, 0, tzinfo=UTC)
    clock.freeze(enrolled_at)
    sequence_id = await start_sequence(
        runtime,
        [{"wait": {"hours": 8}}, {"email": {"subject": "Evening"}}],
        quiet_hours={"start": "21:00", "end": "08:00"},
    )
    contact_id = await add_contact(runtime, "mover@example.com", timezone="UTC")
    await enrol_now(runtime, sequence_id, contact_id)

    async with runtime.db.session() as session:
        fact = await get_facts(session, contact_id)
        assert fact is not None
        fact.timezone = "Europe/Berlin"
        await session.commit()
    await live_through(runtime, enrolled_at + timedelta(days=2), sequence_id=sequence_id)

    assert sent_times(sink, "mover@example.com") == [datetime.fromisoformat("2024-06-05T08:00:00+02:00")]


async def test_frequency_cap_defers_across_sequences(isolated: Isolated, sink: Sink) -> None:
    settings = isolated.settings(smtp_port=sink.port, frequency_cap_max_sends=2, frequency_cap_period_hours=24)
    db = Database(settings.database_url)
    runtime = build_runtime(settings, db=db)
    await beat(runtime)
    start = datetime(2024, 6, 4, 9, 0, tzinfo=UTC)
    clock.freeze(start)
    contact_id = await add_contact(runtime, "capped@example.com")
    sequences = [await start_sequence(runtime, [{"email": {"subject": f"Sequence {number}"}}]) for number in range(3)]

    try:
        for sequence_id in sequences:
            await enrol_now(runtime, sequence_id, contact_id)
        for sequence_id in sequences:
            await live_through(runtime, start + timedelta(days=3), sequence_id=sequence_id)
    finally:
        await runtime.close()
        await db.dispose()

    assert sorted(sent_times(sink, "capped@example.com")) == [start, start, start + timedelta(hours=24)]
