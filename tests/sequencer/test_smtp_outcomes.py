"""Each recipient's SMTP outcome is recorded on its own: a refusal fails one message, a temporary error retries.

The SMTP server is a real aiosmtpd server started by the test, whose handler refuses chosen
recipients at RCPT.
"""

from datetime import UTC, datetime, timedelta

from sqlmodel import select

from services.kit import clock
from services.sequencer.enrolments.runtime import Runtime
from services.sequencer.sending.models import SentMessage
from tests.sequencer.support import Sink, add_contact, drive

START = datetime(2024, 6, 4, 9, 0, tzinfo=UTC)
RECIPIENTS = ["a", "b", "c", "d", "e"]


async def send_log(runtime: Runtime, sequence_id: str) -> dict[str, SentMessage]:
    async with runtime.db.session() as session:
        rows = (await session.exec(select(SentMessage).where(SentMessage.sequence_id == sequence_id))).all()
    return {row.recipient.split("-")[0]: row for row in rows}


async def test_permanent_and_temporary_failures_per_recipient(api, runtime: Runtime, sink: Sink) -> None:
    _, client = api
    clock.freeze(START)
    suffix = f"-{START.timestamp():.0f}-{id(sink)}@example.com"
    addresses = {name: f"{name}{suffix}" for name in RECIPIENTS}
    sink.handler.replies[addresses["b"]] = ["550 5.1.1 User unknown"]
    sink.handler.replies[addresses["d"]] = ["454 4.7.0 Try again later", "454 4.7.0 Try again later"]
    template = await client.post("/templates", json={"name": "k", "subject": "Campaign", "html": "<p>News</p>"})
    body = {"name": "Campaign", "trigger": {"type": "manual"}, "steps": [{"id": "news", "email": {"template_id": template.json()["id"]}}]}
    sequence_id = (await client.post("/sequences", json=body)).json()["id"]
    await client.post(f"/sequences/{sequence_id}/activate")
    for name in RECIPIENTS:
        contact_id = await add_contact(runtime, addresses[name])
        assert (await client.post(f"/sequences/{sequence_id}/enrollments", json={"contact_id": contact_id})).status_code == 201

    await drive(runtime)
    first = await send_log(runtime, sequence_id)
    report = (await client.get(f"/sequences/{sequence_id}/report")).json()
    assert {name: row.state for name, row in first.items()} == {
        "a": "sent", "b": "failed_permanent", "c": "sent", "d": "retrying", "e": "sent",
    }
    assert report["finished"] is False

    for _ in range(3):
        clock.freeze(clock.now() + timedelta(minutes=11))
        await drive(runtime)

    log = await send_log(runtime, sequence_id)
    assert {name: row.state for name, row in log.items()} == {
        "a": "sent", "b": "failed_permanent", "c": "sent", "d": "sent", "e": "sent",
    }
    assert log["d"].attempts == 3
    assert log["b"].attempts == 1
    assert {name: len(sink.handler.to(address)) for name, address in addresses.items()} == {"a": 1, "b": 0, "c": 1, "d": 1, "e": 1}
    assert {name: sink.handler.rcpt_calls[address] for name, address in addresses.items()} == {"a": 1, "b": 1, "c": 1, "d": 3, "e": 1}

    report = (await client.get(f"/sequences/{sequence_id}/report")).json()
    [step] = report["steps"]
    assert report["finished"] is True
    assert step["send_log"] == {"sent": 4, "failed_permanent": 1}
    assert (step["failed"], step["bounces"], step["delivered"]) == (1, 1, 4)
    assert report["enrolments"] == {"completed": 4, "exited": 1}


async def test_retry_waits_for_backoff(api, runtime: Runtime, sink: Sink) -> None:
    _, client = api
    clock.freeze(START)
    address = f"greylisted-{id(sink)}@example.com"
    sink.handler.replies[address] = ["451 4.7.1 Greylisted, try again"]
    template = await client.post("/templates", json={"name": "g", "subject": "Hello", "html": "<p>Hello</p>"})
    body = {"name": "Greylist", "trigger": {"type": "manual"}, "steps": [{"email": {"template_id": template.json()["id"]}}]}
    sequence_id = (await client.post("/sequences", json=body)).json()["id"]
    await client.post(f"/sequences/{sequence_id}/activate")
    contact_id = await add_contact(runtime, address)
    await client.post(f"/sequences/{sequence_id}/enrollments", json={"contact_id": contact_id})

    await drive(runtime)
    clock.freeze(START + timedelta(seconds=59))
    await drive(runtime)
    assert sink.handler.rcpt_calls[address] == 1

    clock.freeze(START + timedelta(seconds=61))
    await drive(runtime)
    assert sink.handler.rcpt_calls[address] == 2
    assert len(sink.handler.to(address)) == 1
    message = (await send_log(runtime, sequence_id))["greylisted"]
    read = (await client.get(f"/messages/{message.message_id}")).json()
    assert (read["state"], read["attempts"], read["status"]) == ("sent", 2, "sent")


async def test_retries_exhausted_gives_up(api, isolated, sink: Sink) -> None:
    from services.kit.db import Database
    from services.sequencer.enrolments.runtime import beat, build_runtime

    _, client = api
    settings = isolated.settings(smtp_port=sink.port, smtp_max_attempts=2, smtp_retry_base_s=60, smtp_retry_max_s=60)
    db = Database(settings.database_url)
    runtime = build_runtime(settings, db=db)
    await beat(runtime)
    clock.freeze(START)
    address = f"full-mailbox-{id(sink)}@example.com"
    sink.handler.replies[address] = ["452 4.2.2 Mailbox full"] * 5
    template = await client.post("/templates", json={"name": "f", "subject": "Hello", "html": "<p>Hello</p>"})
    body = {"name": "Full", "trigger": {"type": "manual"}, "steps": [{"email": {"template_id": template.json()["id"]}}]}
    sequence_id = (await client.post("/sequences", json=body)).json()["id"]
    await client.post(f"/sequences/{sequence_id}/activate")
    contact_id = await add_contact(runtime, address)
    await client.post(f"/sequences/{sequence_id}/enrollments", json={"contact_id": contact_id})

    try:
        await drive(runtime)
        clock.freeze(START + timedelta(minutes=2))
        await drive(runtime)
    finally:
        await runtime.close()
        await db.dispose()

    message = (await send_log(runtime, sequence_id))["full"]
    assert (message.state, message.attempts) == ("failed_temporary", 2)
    assert sink.handler.rcpt_calls[address] == 2
    report = (await client.get(f"/sequences/{sequence_id}/report")).json()
    assert report["finished"] is True
    assert report["steps"][0]["bounces"] == 1
