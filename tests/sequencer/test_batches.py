"""Due steps run in batches: the same results as one by one, with a few statements per email."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event
from sqlmodel import col, select

from services.kit import clock
from services.kit.db import Database
from services.sequencer.db import OutboxMessage
from services.sequencer.enrolments.batch import GroupCommit
from services.sequencer.enrolments.dispatch import batcher_of
from services.sequencer.enrolments.models import Enrolment, StepRun
from services.sequencer.enrolments.runner import enrolments_with_versions
from services.sequencer.enrolments.runtime import Runtime, build_runtime
from services.sequencer.enrolments.service import Move, ScheduledRun, advance_many
from services.sequencer.enrolments.tasks import sweep_due_steps
from services.sequencer.sending.models import SentMessage
from services.sequencer.sequences.store import definition_of
from tests.sequencer.conftest import Isolated
from tests.sequencer.support import Sink, deliver, drive, snapshot
from tests.sequencer.test_consent_check import route_contacts

START = datetime(2024, 6, 4, 9, 0, tzinfo=UTC)
Apps = tuple[FastAPI, httpx.AsyncClient]


async def wait_then_email(client: httpx.AsyncClient, send_window: dict[str, object] | None = None) -> str:
    template = await client.post(
        "/templates", json={"name": "Batch", "subject": "Hello {{ contact.first_name | fallback('friend') }}", "html": "<p>Hi {{ contact.first_name | fallback('friend') }}</p>"}
    )
    assert template.status_code == 201, template.text
    email: dict[str, object] = {"template_id": template.json()["id"]}
    if send_window is not None:
        email["send_window"] = send_window
    steps = [{"wait": {"hours": 1}}, {"email": email}]
    sequence = await client.post("/sequences", json={"name": "Batch", "trigger": {"type": "manual"}, "steps": steps})
    assert sequence.status_code == 201, sequence.text
    await client.post(f"/sequences/{sequence.json()['id']}/activate")
    return str(sequence.json()["id"])


async def enrol_new(runtime: Runtime, client: httpx.AsyncClient, sequence_id: str, count: int, **fields: object) -> dict[str, str]:
    """Create `count` contacts in the sequencer's copy and enrol them; return their addresses by contact id."""
    addresses: dict[str, str] = {}
    for number in range(count):
        contact_id = uuid.uuid4().hex
        address = f"batch-{number}-{contact_id[:8]}@example.com"
        await deliver(runtime, "contact.changed", snapshot(contact_id, address, first_name=f"Lead{number}", **fields))
        enrolled = await client.post(f"/sequences/{sequence_id}/enrollments", json={"contact_id": contact_id})
        assert enrolled.status_code == 201, enrolled.text
        addresses[contact_id] = address
    return addresses


async def test_due_emails_go_out_in_batches_once_each(api: Apps, runtime: Runtime, sink: Sink) -> None:
    _, client = api
    clock.freeze(START)
    sequence_id = await wait_then_email(client)
    addresses = await enrol_new(runtime, client, sequence_id, 30)

    clock.freeze(START + timedelta(hours=1))
    await drive(runtime)

    for number, (contact_id, address) in enumerate(addresses.items()):
        received = sink.handler.to(address)
        assert [message["Subject"] for message in received] == [f"Hello Lead{number}"], contact_id
    async with runtime.db.session() as session:
        enrolments = (await session.exec(select(Enrolment).where(Enrolment.sequence_id == sequence_id))).all()
        messages = (await session.exec(select(SentMessage).where(SentMessage.sequence_id == sequence_id))).all()
        outbox = (await session.exec(select(OutboxMessage).where(OutboxMessage.topic == "email.engagement"))).all()
    sent_events = [row for row in outbox if row.envelope["payload"]["type"] == "email_sent"]
    assert {enrolment.state for enrolment in enrolments} == {"completed"}
    assert {(message.state, message.attempts, message.claimed_by) for message in messages} == {("sent", 1, None)}
    assert {message.sent_at for message in messages} == {START + timedelta(hours=1)}
    published = {event.envelope["payload"]["properties"]["message_id"] for event in sent_events}
    assert {message.message_id for message in messages} <= published
    batcher = batcher_of(runtime)
    assert batcher.batched >= 60
    assert batcher.alone == 0


async def test_batch_uses_few_statements_per_email(api: Apps, runtime: Runtime, sink: Sink) -> None:
    _, client = api
    clock.freeze(START)
    sequence_id = await wait_then_email(client)
    addresses = await enrol_new(runtime, client, sequence_id, 40)
    statements: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    engine = runtime.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        clock.freeze(START + timedelta(hours=1))
        await drive(runtime)
    finally:
        event.remove(engine, "before_cursor_execute", count)

    assert sum(len(sink.handler.to(address)) for address in addresses.values()) == 40
    # One by one, a wait and its email took about 36 statements; a batch shares most of them.
    assert len(statements) / 40 < 9, len(statements)
    # The emails that follow the waits are scheduled together, not with an INSERT each.
    scheduled = [statement for statement in statements if statement.lstrip().upper().startswith("INSERT INTO STEP_RUN")]
    assert 1 <= len(scheduled) <= 3, len(scheduled)


async def test_steps_a_batch_cannot_run_end_as_alone(api: Apps, runtime: Runtime, sink: Sink) -> None:
    _, client = api
    clock.freeze(START)
    sequence_id = await wait_then_email(client)
    plain = await enrol_new(runtime, client, sequence_id, 3)
    opted_out = await enrol_new(runtime, client, sequence_id, 1)
    opted_out_id = next(iter(opted_out))
    consent = {"contact_id": opted_out_id, "topic": None, "status": "unsubscribed", "source": "api", "at": START.isoformat()}
    await deliver(runtime, "consent.changed", consent)
    office_hours = await wait_then_email(client, send_window={"weekdays": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "17:00"})
    deferred = await enrol_new(runtime, client, office_hours, 1)

    # The worker comes back at 18:00, past the grace for late sends: the office-hours email waits for
    # the next morning, the others go out now.
    late = START.replace(hour=18)
    clock.freeze(late)
    await drive(runtime)

    assert all(len(sink.handler.to(address)) == 1 for address in plain.values())
    assert sink.handler.to(opted_out[opted_out_id]) == []
    assert sink.handler.to(next(iter(deferred.values()))) == []
    async with runtime.db.session() as session:
        opted_out_enrolment = (await session.exec(select(Enrolment).where(Enrolment.contact_id == opted_out_id))).one()
        waiting = (
            await session.exec(
                select(StepRun).join(Enrolment, col(Enrolment.id) == col(StepRun.enrolment_id))
                .where(Enrolment.contact_id == next(iter(deferred)), StepRun.kind == "email")
            )
        ).one()
    assert (opted_out_enrolment.state, opted_out_enrolment.exit_reason) == ("exited", "unsubscribed")
    assert (waiting.state, waiting.due_at) == ("scheduled", START.replace(hour=9) + timedelta(days=1))
    assert batcher_of(runtime).alone >= 1


async def test_batch_asks_contacts_once_per_batch(api: Apps, runtime: Runtime, sink: Sink, contacts_app: Apps) -> None:
    _, client = api
    contacts, contacts_client = contacts_app
    route_contacts(runtime, contacts)
    clock.freeze(START)
    sequence_id = await wait_then_email(client)
    addresses: dict[str, str] = {}
    for number in range(6):
        address = f"asked-{number}-{uuid.uuid4().hex[:8]}@example.com"
        contact_id = (await contacts_client.post("/contacts", json={"email": address})).json()["id"]
        await deliver(runtime, "contact.changed", snapshot(contact_id, address))
        await client.post(f"/sequences/{sequence_id}/enrollments", json={"contact_id": contact_id})
        addresses[contact_id] = address
    unsubscribed = next(iter(addresses))
    changed = await contacts_client.put(f"/contacts/{unsubscribed}/consent", json={"status": "unsubscribed"})
    assert changed.status_code == 200, changed.text

    clock.freeze(START + timedelta(hours=1))
    await drive(runtime)

    # The sequencer's copy still has the contact subscribed, so the contacts service's verdict stops the send.
    assert sink.handler.to(addresses[unsubscribed]) == []
    assert all(len(sink.handler.to(address)) == 1 for contact_id, address in addresses.items() if contact_id != unsubscribed)
    async with runtime.db.session() as session:
        enrolment = (await session.exec(select(Enrolment).where(Enrolment.contact_id == unsubscribed))).one()
        runs = (await session.exec(select(StepRun).where(StepRun.enrolment_id == enrolment.id))).all()
    assert (enrolment.state, enrolment.exit_reason) == ("exited", "unsubscribed")
    assert not [run for run in runs if run.kind == "email" and run.state == "done"]


async def test_group_commit_joins_waiting_items() -> None:
    groups: list[list[int]] = []

    async def write(items: list[int]) -> list[int]:
        groups.append(items)
        await asyncio.sleep(0.01)
        return [item * 2 for item in items]

    commits: GroupCommit[int, int] = GroupCommit(write)
    first = asyncio.ensure_future(commits.submit(1))
    await asyncio.sleep(0.001)
    later = [asyncio.ensure_future(commits.submit(number)) for number in (2, 3, 4)]

    assert await first == 2
    assert [await answer for answer in later] == [4, 6, 8]
    assert groups == [[1], [2, 3, 4]]


def lingering_commit(linger_s: float, max_items: int) -> tuple[GroupCommit[int, int], list[list[int]]]:
    """Return a group commit whose write echoes its items, and the list of the groups it wrote."""
    groups: list[list[int]] = []

    async def write(items: list[int]) -> list[int]:
        groups.append(items)
        return items

    return GroupCommit(write, linger_s=linger_s, max_items=max_items), groups


async def test_group_commit_lingers_for_more_items() -> None:
    # The linger outlasts the test, so only a full group can start the write.
    commits, groups = lingering_commit(600, 3)
    first = asyncio.ensure_future(commits.submit(1))
    await asyncio.sleep(0.02)
    assert groups == []

    rest = [asyncio.ensure_future(commits.submit(number)) for number in (2, 3)]
    answers = await asyncio.wait_for(asyncio.gather(first, *rest), 10)
    assert answers == [1, 2, 3]
    assert groups == [[1, 2, 3]]


async def test_group_commit_writes_lone_item_after_linger() -> None:
    commits, groups = lingering_commit(0.05, 3)

    assert await asyncio.wait_for(commits.submit(4), 10) == 4
    assert groups == [[4]]


async def test_group_commit_flush_skips_linger() -> None:
    commits, groups = lingering_commit(600, 3)
    waiting = asyncio.ensure_future(commits.submit(5))
    await asyncio.sleep(0.02)

    await asyncio.wait_for(commits.flush(), 10)

    assert groups == [[5]]
    assert commits.pending == 0
    assert await waiting == 5


async def test_group_commit_failure_fails_group() -> None:
    async def write(items: list[int]) -> list[int]:
        raise RuntimeError("database gone")

    commits: GroupCommit[int, int] = GroupCommit(write)
    with pytest.raises(RuntimeError, match="database gone"):
        await commits.submit(1)


async def test_stopping_worker_releases_claims_of_running_batches(api: Apps, runtime: Runtime, sink: Sink) -> None:
    _, client = api
    clock.freeze(START)
    sequence_id = await wait_then_email(client)
    addresses = await enrol_new(runtime, client, sequence_id, 3)
    answer_rcpt = sink.handler.handle_RCPT
    release = asyncio.Event()

    async def slow_rcpt(*args: object) -> str:
        # The server keeps the batch waiting before any content goes out.
        await release.wait()
        return await answer_rcpt(*args)  # type: ignore[arg-type]

    sink.handler.handle_RCPT = slow_rcpt  # type: ignore[method-assign]
    clock.freeze(START + timedelta(hours=1))
    sweep = asyncio.ensure_future(drive(runtime))

    async def claimed() -> list[SentMessage]:
        async with runtime.db.session() as session:
            return list((await session.exec(select(SentMessage).where(SentMessage.sequence_id == sequence_id))).all())

    for _ in range(200):
        if len(await claimed()) == 3:
            break
        await asyncio.sleep(0.02)
    await batcher_of(runtime).close()
    sweep.cancel()
    release.set()

    messages = await claimed()
    assert {(message.state, message.claimed_by) for message in messages} == {("sending", None)}
    assert sink.handler.messages == []

    # The next worker sends each message once, with the Message-ID recorded before the stop.
    runtime.batcher = None
    sink.handler.handle_RCPT = answer_rcpt  # type: ignore[method-assign]
    await drive(runtime)
    for address in addresses.values():
        recorded = [stored.message_id for stored in messages if stored.recipient == address]
        assert [message["Message-ID"] for message in sink.handler.to(address)] == recorded


async def test_advance_many_schedules_once(api: Apps, runtime: Runtime, sink: Sink) -> None:
    _, client = api
    clock.freeze(START)
    sequence_id = await wait_then_email(client)
    await enrol_new(runtime, client, sequence_id, 3)

    async def advance_all() -> list[ScheduledRun | None]:
        async with runtime.db.session() as session:
            rows = (await session.exec(enrolments_with_versions().where(col(Enrolment.sequence_id) == sequence_id))).all()
            moves = [
                Move(enrolment, definition_of(version), None, definition_of(version).steps[0].id, START + timedelta(hours=1))
                for enrolment, _, version in rows
            ]
            answers = await advance_many(session, moves)
            await session.commit()
        return answers

    first, second = await advance_all(), await advance_all()

    assert len(first) == 3
    assert None not in first
    assert {answer.due_at for answer in first if answer is not None} == {START + timedelta(hours=1)}
    # A worker that advances the same enrolments a moment later finds their step runs there and schedules nothing.
    assert second == [None, None, None]
    async with runtime.db.session() as session:
        runs = (await session.exec(select(StepRun).join(Enrolment).where(col(Enrolment.sequence_id) == sequence_id))).all()
        enrolments = (await session.exec(select(Enrolment).where(col(Enrolment.sequence_id) == sequence_id))).all()
    assert sorted(run.kind for run in runs) == ["email"] * 3 + ["wait"] * 3
    assert {enrolment.current_step_id for enrolment in enrolments} == {run.step_id for run in runs if run.kind == "email"}


async def test_sweep_overlaps_batches_once_each(api: Apps, isolated: Isolated, sink: Sink) -> None:
    _, client = api
    settings = isolated.settings(smtp_port=sink.port, sweep_batch_size=4)
    db = Database(settings.database_url)
    runtime = build_runtime(settings, db=db)
    clock.freeze(START)
    sequence_id = await wait_then_email(client)
    addresses = await enrol_new(runtime, client, sequence_id, 11)
    in_flight: list[int] = []
    original_run = batcher_of(runtime).run

    async def run_counting(step_run_id: int) -> str:
        in_flight.append(len(runtime.running))
        return await original_run(step_run_id)

    batcher_of(runtime).run = run_counting  # type: ignore[method-assign]
    try:
        clock.freeze(START + timedelta(hours=1))
        await sweep_due_steps({"runtime": runtime})
    finally:
        await runtime.close()
        await db.dispose()

    for contact_id, address in addresses.items():
        assert len(sink.handler.to(address)) == 1, contact_id
    async with Database(settings.database_url).session() as session:
        states = (await session.exec(select(Enrolment.state).where(Enrolment.sequence_id == sequence_id))).all()
    assert set(states) == {"completed"}
    # A batch was read while the one before it was still running.
    assert max(in_flight) > 0
