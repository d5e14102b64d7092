"""Per-day email performance of a sequence, sent for real through an SMTP sink."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlmodel import select

from services.kit import clock
from services.sequencer.enrolments.runtime import Runtime
from services.sequencer.sending.models import SentMessage
from tests.sequencer.conftest import api, isolated, pause_sequences_afterwards, runtime, sink  # noqa: F401 - fixtures
from tests.sequencer.support import Sink, add_contact, deliver, drive, timeline_event

DAY_ONE = datetime(2024, 9, 2, 9, 0, tzinfo=UTC)
DAY_TWO = DAY_ONE + timedelta(days=1)
WEBKIT = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko)"


async def create_sequence(client: httpx.AsyncClient) -> str:
    clock.freeze(DAY_ONE)
    html = '<p><a href="https://example.com/a">a</a></p>'
    template = await client.post("/templates", json={"name": "daily", "subject": "Daily", "html": html})
    body = {"name": f"Daily {uuid.uuid4().hex[:6]}", "trigger": {"type": "manual"}, "steps": [{"id": "news", "email": {"template_id": template.json()["id"]}}]}
    sequence_id: str = (await client.post("/sequences", json=body)).json()["id"]
    await client.post(f"/sequences/{sequence_id}/activate")
    return sequence_id


async def send_to(client: httpx.AsyncClient, runtime: Runtime, sink: Sink, sequence_id: str, count: int, *, refuse: int = 0) -> list[SentMessage]:
    addresses = []
    for index in range(count):
        address = f"daily-{uuid.uuid4().hex[:10]}@example.com"
        if index < refuse:
            sink.handler.replies[address] = ["550 5.1.1 User unknown"]
        contact_id = await add_contact(runtime, address)
        response = await client.post(f"/sequences/{sequence_id}/enrollments", json={"contact_id": contact_id})
        assert response.status_code == 201, response.text
        addresses.append(address)
    await drive(runtime)
    async with runtime.db.session() as session:
        query = select(SentMessage).where(SentMessage.sequence_id == sequence_id)
        messages = [message for message in (await session.exec(query)).all() if message.recipient in addresses]
    return sorted(messages, key=lambda message: addresses.index(message.recipient))


async def engage(runtime: Runtime, message: SentMessage, kind: str, at: datetime) -> None:
    properties = {"message_id": message.message_id, "user_agent": WEBKIT, "url": "https://example.com/a"}
    payload = timeline_event(message.contact_id, kind, properties, occurred_at=at)
    assert await deliver(runtime, "contact.event_recorded", payload) == "applied"


async def performance(client: httpx.AsyncClient, **params: Any) -> httpx.Response:
    return await client.get("/reports/sequence-performance", params=params)


async def test_days_follow_send_day(api, runtime: Runtime, sink: Sink) -> None:  # noqa: F811
    _, client = api
    sequence_id = await create_sequence(client)
    first_day = await send_to(client, runtime, sink, sequence_id, 3, refuse=1)
    clock.freeze(DAY_TWO)
    second_day = await send_to(client, runtime, sink, sequence_id, 2)
    await engage(runtime, first_day[1], "email_opened", DAY_TWO + timedelta(hours=1))
    await engage(runtime, second_day[0], "email_clicked", DAY_TWO + timedelta(hours=2))

    window = {"since": "2024-09-02T00:00:00Z", "until": "2024-09-04T00:00:00Z", "sequence_id": sequence_id}
    response = await performance(client, **window)

    assert response.status_code == 200, response.text
    [sequence] = response.json()["sequences"]
    days = {item["day"]: item for item in sequence["days"]}
    assert list(days) == ["2024-09-02", "2024-09-03"]
    first, second = days["2024-09-02"], days["2024-09-03"]
    assert (first["sent"], first["delivered"], first["bounces"]) == (3, 2, 1)
    assert (first["unique_opens"], first["total_opens"], first["unique_clicks"]) == (1, 1, 0)
    assert (second["sent"], second["delivered"], second["bounces"]) == (2, 2, 0)
    assert (second["unique_opens"], second["total_opens"], second["unique_clicks"], second["total_clicks"]) == (1, 0, 1, 1)
    assert first["open_rate"] == 0.5
    assert second["click_rate"] == 0.5


async def test_totals_match_step_report(api, runtime: Runtime, sink: Sink) -> None:  # noqa: F811
    _, client = api
    sequence_id = await create_sequence(client)
    messages = await send_to(client, runtime, sink, sequence_id, 4, refuse=1)
    await engage(runtime, messages[2], "email_opened", DAY_ONE + timedelta(hours=3))
    await engage(runtime, messages[3], "email_clicked", DAY_ONE + timedelta(hours=4))

    response = await performance(client, since="2024-09-01T00:00:00Z", until="2024-09-05T00:00:00Z", sequence_id=sequence_id)
    step = (await client.get(f"/sequences/{sequence_id}/report")).json()["steps"][0]

    totals = response.json()["sequences"][0]["totals"]
    for name in ("sent", "delivered", "bounces", "unique_opens", "total_opens", "unique_clicks", "total_clicks"):
        assert totals[name] == step[name], name


async def test_quiet_days_are_zero(api, runtime: Runtime, sink: Sink) -> None:  # noqa: F811
    _, client = api
    sequence_id = await create_sequence(client)

    response = await performance(client, since="2020-01-01T00:00:00Z", until="2020-01-04T00:00:00Z", sequence_id=sequence_id)

    [sequence] = response.json()["sequences"]
    assert [item["day"] for item in sequence["days"]] == ["2020-01-01", "2020-01-02", "2020-01-03"]
    assert all(item["sent"] == 0 and item["open_rate"] is None for item in sequence["days"])


async def test_unknown_sequence_is_not_found(api) -> None:  # noqa: F811
    _, client = api

    response = await performance(client, sequence_id="seq_missing")

    assert response.status_code == 404, response.text


async def test_window_limits(api) -> None:  # noqa: F811
    _, client = api

    naive = await performance(client, since="2024-01-01T00:00:00")
    reversed_window = await performance(client, since="2024-01-02T00:00:00Z", until="2024-01-01T00:00:00Z")
    too_long = await performance(client, since="2022-01-01T00:00:00Z", until="2024-01-01T00:00:00Z")

    assert naive.status_code == 422
    assert naive.json()["errors"][0]["field"] == "since"
    assert reversed_window.status_code == 422
    assert reversed_window.json()["errors"][0]["field"] == "until"
    assert too_long.status_code == 422
    assert too_long.json()["errors"][0]["field"] == "since"
