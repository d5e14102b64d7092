"""Email events become message events once per event id, with a monotonic status and human-only metrics."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlmodel import select

from services.kit import clock
from services.sequencer.enrolments.models import Enrolment
from services.sequencer.enrolments.runtime import Runtime
from services.sequencer.facts.models import ContactFact
from services.sequencer.sending.models import SentMessage
from tests.sequencer.support import Sink, add_contact, deliver, drive, timeline_event

SENT = datetime(2024, 6, 4, 9, 0, tzinfo=UTC)
WEBKIT = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko)"
SCANNER = "Mozilla/5.0 (compatible; Barracuda Sentinel URL scanner)"


async def campaign(client: httpx.AsyncClient, runtime: Runtime, sink: Sink, size: int, *, refuse: int = 0) -> tuple[str, list[SentMessage]]:
    """Send a one-email sequence to `size` new contacts, the first `refuse` of whom the server refuses."""
    clock.freeze(SENT)
    template = await client.post("/templates", json={"name": "k", "subject": "Campaign", "html": '<p><a href="https://example.com/a">a</a></p>'})
    body = {"name": "Campaign", "trigger": {"type": "manual"}, "steps": [{"id": "news", "email": {"template_id": template.json()["id"]}}]}
    sequence_id = (await client.post("/sequences", json=body)).json()["id"]
    await client.post(f"/sequences/{sequence_id}/activate")
    for index in range(size):
        address = f"k-{uuid.uuid4().hex[:10]}@example.com"
        if index < refuse:
            sink.handler.replies[address] = ["550 5.1.1 User unknown"]
        contact_id = await add_contact(runtime, address)
        assert (await client.post(f"/sequences/{sequence_id}/enrollments", json={"contact_id": contact_id})).status_code == 201
    await drive(runtime)
    async with runtime.db.session() as session:
        messages = list((await session.exec(select(SentMessage).where(SentMessage.sequence_id == sequence_id))).all())
    return sequence_id, sorted(messages, key=lambda message: message.recipient)


async def email_event(
    runtime: Runtime, message: SentMessage, kind: str, at: datetime, *, event_id: str | None = None, **properties: Any
) -> None:
    payload = timeline_event(message.contact_id, kind, {"message_id": message.message_id, **properties}, occurred_at=at)
    if event_id is not None:
        payload["event"]["id"] = event_id
    assert await deliver(runtime, "contact.event_recorded", payload) == "applied"


async def step_report(client: httpx.AsyncClient, sequence_id: str) -> dict[str, Any]:
    response = await client.get(f"/sequences/{sequence_id}/report")
    assert response.status_code == 200, response.text
    return response.json()["steps"][0]  # type: ignore[no-any-return]


# --- events stored once per event id ----------------------------------------------------------------


async def test_events_stored_once_per_event_id(api, runtime: Runtime, sink: Sink) -> None:
    _, client = api
    sequence_id, [message] = await campaign(client, runtime, sink, 1)
    batch = [("e1", "email_delivered", {}), ("e2", "email_opened", {}), ("e3", "email_clicked", {"url": "https://example.com/p"})]
    ids = {name: f"{name}-{uuid.uuid4().hex}" for name in ("e1", "e2", "e3", "e4")}

    for _ in range(3):
        for name, kind, properties in batch:
            await email_event(runtime, message, kind, SENT + timedelta(minutes=5), event_id=ids[name], **properties)
    events = (await client.get(f"/messages/{message.message_id}/events")).json()["items"]
    assert [event["type"] for event in events] == ["delivered", "opened", "clicked"]

    await email_event(runtime, message, "email_opened", SENT + timedelta(minutes=5), event_id=ids["e2"])
    await email_event(runtime, message, "email_opened", SENT + timedelta(minutes=9), event_id=ids["e4"])
    events = (await client.get(f"/messages/{message.message_id}/events")).json()["items"]
    assert len(events) == 4
    report = await step_report(client, sequence_id)
    assert (report["unique_opens"], report["total_opens"]) == (1, 2)


# --- the status never moves backwards ---------------------------------------------------------------


async def test_out_of_order_events_keep_newest_status(api, runtime: Runtime, sink: Sink) -> None:
    _, client = api
    sequence_id, [message, other] = await campaign(client, runtime, sink, 2)
    at = datetime(2024, 6, 4, 10, 0, tzinfo=UTC)

    await email_event(runtime, message, "email_opened", at + timedelta(minutes=5))
    await email_event(runtime, message, "email_delivered", at)
    await email_event(runtime, message, "email_processed", at - timedelta(minutes=1))
    read = (await client.get(f"/messages/{message.message_id}")).json()
    assert read["status"] == "opened"
    assert datetime.fromisoformat(read["delivered_at"]) == at
    assert datetime.fromisoformat(read["opened_at"]) == at + timedelta(minutes=5)

    await email_event(runtime, message, "email_bounced", at - timedelta(minutes=2), bounce_type="hard")
    read = (await client.get(f"/messages/{message.message_id}")).json()
    events = (await client.get(f"/messages/{message.message_id}/events")).json()["items"]
    assert read["status"] == "opened"
    assert "bounced" in [event["type"] for event in events]
    assert await enrolment_state(runtime, message.enrolment_id) == ("completed", None)
    assert await consent_of(runtime, message.contact_id) == "subscribed"

    await email_event(runtime, other, "email_bounced", at + timedelta(hours=1), bounce_type="hard")
    assert (await client.get(f"/messages/{other.message_id}")).json()["status"] == "bounced"
    assert await consent_of(runtime, other.contact_id) == "bounced"
    report = await step_report(client, sequence_id)
    assert (report["sent"], report["delivered"], report["bounces"]) == (2, 1, 1)


async def test_hard_bounce_takes_contact_out(api, runtime: Runtime) -> None:
    _, client = api
    clock.freeze(SENT)
    template = await client.post("/templates", json={"name": "b", "subject": "One", "html": "<p>One</p>"})
    steps = [{"email": {"template_id": template.json()["id"]}}, {"wait": {"days": 1}}, {"email": {"template_id": template.json()["id"]}}]
    sequence_id = (await client.post("/sequences", json={"name": "Two", "trigger": {"type": "manual"}, "steps": steps})).json()["id"]
    await client.post(f"/sequences/{sequence_id}/activate")
    contact_id = await add_contact(runtime, f"bouncing-{uuid.uuid4().hex[:6]}@example.com")
    await client.post(f"/sequences/{sequence_id}/enrollments", json={"contact_id": contact_id})
    await drive(runtime)
    async with runtime.db.session() as session:
        message = (await session.exec(select(SentMessage).where(SentMessage.sequence_id == sequence_id))).one()

    await email_event(runtime, message, "email_bounced", SENT + timedelta(minutes=1), bounce_type="soft")
    assert await enrolment_state(runtime, message.enrolment_id) == ("active", None)
    await email_event(runtime, message, "email_bounced", SENT + timedelta(minutes=2), bounce_type="hard")
    assert await enrolment_state(runtime, message.enrolment_id) == ("exited", "bounced")


async def enrolment_state(runtime: Runtime, enrolment_id: str) -> tuple[str, str | None]:
    async with runtime.db.session() as session:
        enrolment = await session.get(Enrolment, enrolment_id)
        assert enrolment is not None
        return enrolment.state, enrolment.exit_reason


async def consent_of(runtime: Runtime, contact_id: str) -> str:
    async with runtime.db.session() as session:
        fact = await session.get(ContactFact, contact_id)
        assert fact is not None
        return str(fact.consent["*"]["status"])


# --- machines and bots do not count as people ----------------------------------------------------------


async def test_machine_open_kept_apart(api, runtime: Runtime, sink: Sink) -> None:
    _, client = api
    sequence_id, [message] = await campaign(client, runtime, sink, 1)

    await email_event(runtime, message, "email_opened", SENT + timedelta(minutes=1), provider_machine_open=True, machine=True)

    events = (await client.get(f"/messages/{message.message_id}/events")).json()["items"]
    assert [(event["verdict"], event["reasons"]) for event in events] == [("machine", ["provider_machine_open", "flagged_machine"])]
    report = await step_report(client, sequence_id)
    assert (report["unique_opens"], report["machine_opens"], report["open_rate"]) == (0, 1, 0.0)
    assert (await client.get(f"/messages/{message.message_id}")).json()["status"] == "sent"


async def test_scanner_click_burst_is_bot(api, runtime: Runtime, sink: Sink) -> None:
    _, client = api
    sequence_id, [message] = await campaign(client, runtime, sink, 1)
    await email_event(runtime, message, "email_delivered", SENT)
    links = [f"https://example.com/{number}" for number in range(5)] + ["http://127.0.0.1:8000/u/token"]

    for offset, url in enumerate(links):
        at = SENT + timedelta(milliseconds=500 * offset)
        await email_event(runtime, message, "email_clicked", at, url=url, user_agent=SCANNER, ip="203.0.113.9")

    events = (await client.get(f"/messages/{message.message_id}/events")).json()["items"]
    clicks = [event for event in events if event["type"] == "clicked"]
    assert len(clicks) == 6
    assert all(event["verdict"] == "bot" for event in clicks)
    assert {"scanner_user_agent", "link_burst", "too_soon_after_delivery"} <= set(clicks[-1]["reasons"])
    report = await step_report(client, sequence_id)
    assert (report["total_clicks"], report["unique_clicks"], report["bot_clicks"], report["unsubscribes"]) == (0, 0, 6, 0)
    assert await consent_of(runtime, message.contact_id) == "subscribed"


async def test_later_hits_turn_earlier_click_into_burst(api, runtime: Runtime, sink: Sink) -> None:
    """A click that looked human alone becomes part of a burst when the next hits arrive."""
    _, client = api
    _, [message] = await campaign(client, runtime, sink, 1)
    first = SENT + timedelta(minutes=3)

    await email_event(runtime, message, "email_clicked", first, url="https://example.com/0", user_agent=WEBKIT, ip="198.51.100.7")
    assert (await client.get(f"/messages/{message.message_id}/events")).json()["items"][0]["verdict"] == "human"
    for offset in (1, 2):
        at = first + timedelta(seconds=offset)
        await email_event(runtime, message, "email_clicked", at, url=f"https://example.com/{offset}", user_agent=WEBKIT, ip="198.51.100.7")

    verdicts = [event["verdict"] for event in (await client.get(f"/messages/{message.message_id}/events")).json()["items"]]
    assert verdicts == ["bot", "bot", "bot"]


async def test_open_with_webkit_after_25_minutes_is_human(api, runtime: Runtime, sink: Sink) -> None:
    _, client = api
    sequence_id, [message] = await campaign(client, runtime, sink, 1)
    await email_event(runtime, message, "email_delivered", SENT)

    await email_event(runtime, message, "email_opened", SENT + timedelta(minutes=25), user_agent=WEBKIT, ip="198.51.100.7")

    report = await step_report(client, sequence_id)
    assert (report["unique_opens"], report["machine_opens"]) == (1, 0)


async def test_bare_mozilla_open_is_machine(api, runtime: Runtime, sink: Sink) -> None:
    _, client = api
    sequence_id, [message] = await campaign(client, runtime, sink, 1)

    await email_event(runtime, message, "email_opened", SENT + timedelta(minutes=2), user_agent="Mozilla/5.0", ip="17.58.0.1")

    report = await step_report(client, sequence_id)
    assert (report["unique_opens"], report["machine_opens"]) == (0, 1)


async def test_branch_ignores_machine_open(api, runtime: Runtime, sink: Sink) -> None:
    _, client = api
    clock.freeze(SENT)
    ids = {}
    for name in ("welcome", "case-study", "resend"):
        ids[name] = (await client.post("/templates", json={"name": name, "subject": name, "html": f"<p>{name}</p>"})).json()["id"]
    steps = [
        {"id": "welcome", "email": {"template_id": ids["welcome"]}},
        {"wait": {"days": 2}},
        {"branch": {
            "condition": {"type": "engagement", "step_id": "welcome", "action": "opened"},
            "then": [{"email": {"template_id": ids["case-study"]}}],
            "else": [{"email": {"template_id": ids["resend"]}}],
        }},
    ]
    sequence_id = (await client.post("/sequences", json={"name": "Branch", "trigger": {"type": "manual"}, "steps": steps})).json()["id"]
    await client.post(f"/sequences/{sequence_id}/activate")
    machine = await add_contact(runtime, f"machine-{uuid.uuid4().hex[:6]}@example.com")
    person = await add_contact(runtime, f"person-{uuid.uuid4().hex[:6]}@example.com")
    for contact_id in (machine, person):
        await client.post(f"/sequences/{sequence_id}/enrollments", json={"contact_id": contact_id})
    await drive(runtime)
    async with runtime.db.session() as session:
        sent = {row.contact_id: row for row in (await session.exec(select(SentMessage).where(SentMessage.sequence_id == sequence_id))).all()}

    await email_event(runtime, sent[machine], "email_opened", SENT + timedelta(minutes=1), machine_open=True)
    await email_event(runtime, sent[person], "email_opened", SENT + timedelta(hours=1), user_agent=WEBKIT)
    clock.freeze(SENT + timedelta(days=2))
    await drive(runtime)

    subjects = {contact_id: [m["Subject"] for m in sink.handler.to(sent[contact_id].recipient)] for contact_id in (machine, person)}
    assert subjects == {machine: ["welcome", "resend"], person: ["welcome", "case-study"]}


# --- rates: one definition, null on zero, never above one ---------------------------------------------


async def test_rates_per_delivered(api, runtime: Runtime, sink: Sink) -> None:
    _, client = api
    sequence_id, messages = await campaign(client, runtime, sink, 10)
    first, second = messages[0], messages[1]
    for number in range(10):
        await email_event(runtime, first, "email_opened", SENT + timedelta(hours=1, minutes=number), user_agent=WEBKIT)
    await email_event(runtime, second, "email_opened", SENT + timedelta(hours=2), user_agent=WEBKIT)
    for number in range(2):
        await email_event(runtime, second, "email_clicked", SENT + timedelta(hours=2, minutes=number + 1), user_agent=WEBKIT, url="https://example.com/a")

    report = await step_report(client, sequence_id)

    assert (report["sent"], report["delivered"], report["bounces"]) == (10, 10, 0)
    assert (report["total_opens"], report["unique_opens"], report["open_rate"]) == (11, 2, 0.2)
    assert (report["unique_clicks"], report["click_rate"], report["click_to_open"]) == (1, 0.1, 0.5)


async def test_unsent_sequence_has_null_rates(api, runtime: Runtime) -> None:
    _, client = api
    template = await client.post("/templates", json={"name": "n", "subject": "Never", "html": "<p>Never</p>"})
    body = {"name": "Never sent", "trigger": {"type": "manual"}, "steps": [{"email": {"template_id": template.json()["id"]}}]}
    sequence_id = (await client.post("/sequences", json=body)).json()["id"]

    report = await step_report(client, sequence_id)

    assert report["sent"] == 0
    assert [report[name] for name in ("open_rate", "click_rate", "click_to_open", "bounce_rate", "unsubscribe_rate")] == [None] * 5


async def test_all_bounced_gives_bounce_rate_one(api, runtime: Runtime, sink: Sink) -> None:
    _, client = api
    sequence_id, _ = await campaign(client, runtime, sink, 2, refuse=2)

    report = await step_report(client, sequence_id)

    assert (report["sent"], report["delivered"], report["bounce_rate"], report["open_rate"]) == (2, 0, 1.0, None)


async def test_open_rate_over_delivered_after_bounce(api, runtime: Runtime, sink: Sink) -> None:
    _, client = api
    sequence_id, messages = await campaign(client, runtime, sink, 3)
    await email_event(runtime, messages[0], "email_bounced", SENT + timedelta(minutes=1), bounce_type="hard")
    await email_event(runtime, messages[1], "email_opened", SENT + timedelta(hours=1), user_agent=WEBKIT)

    report = await step_report(client, sequence_id)

    assert (report["delivered"], report["open_rate"]) == (2, 0.5)
    assert abs(report["bounce_rate"] - 1 / 3) < 1e-9
    rates = [report[name] for name in ("open_rate", "click_rate", "click_to_open", "bounce_rate", "unsubscribe_rate")]
    assert all(rate is None or 0 <= rate <= 1 for rate in rates)
