"""A five-email welcome sequence sends exactly five personalised emails, in order, at their due times.

The emails go to the platform's own SMTP sink (`services.kit.smtp_sink`), which keeps each as a file.
"""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path

import httpx
import pytest

from services.cli.supervisor import free_port
from services.kit import clock
from services.kit.db import Database
from services.kit.smtp_sink import read_sink, start_sink
from services.sequencer.enrolments.runtime import Runtime, beat, build_runtime
from tests.sequencer.conftest import Isolated
from tests.sequencer.support import add_contact, live_through


class KitSink:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def to(self, address: str) -> list[EmailMessage]:
        return [message for message in read_sink(self.folder) if message["To"] == address]


@pytest.fixture
async def kit_sink(isolated: Isolated, tmp_path: Path) -> AsyncIterator[tuple[Runtime, KitSink]]:
    """A worker runtime sending to the kit's SMTP sink, which stores each message under `tmp_path`."""
    port = free_port()
    controller = start_sink(tmp_path / "mail", port=port)
    settings = isolated.settings(smtp_port=port)
    db = Database(settings.database_url)
    runtime = build_runtime(settings, db=db)
    await beat(runtime)
    yield runtime, KitSink(tmp_path / "mail")
    await runtime.close()
    await db.dispose()
    controller.stop()

START = datetime(2024, 6, 3, 8, 0, tzinfo=UTC)  # a Monday, 10:00 in Berlin

WELCOME_EMAILS = [
    ("thanks", "Thanks for joining, {{ contact.first_name | fallback('friend') }}",
     "<p>Hi {{ contact.first_name | fallback('there') }}, thank you for signing up.</p>"),
    ("resource", "The guide our customers use most",
     '<p>Our most useful resource: <a href="https://example.com/guide">the setup guide</a>.</p>'),
    ("story", "How {{ company.name | fallback('a team like yours') }} could save a day a week",
     "<p>A story: one customer cut their reporting time in half.</p>"),
    ("objection", "Is it hard to switch?",
     "<p>The answer to a common objection: moving takes an afternoon, and we help.</p>"),
    ("offer", "A month on us, {{ contact.first_name | fallback('friend') }}",
     '<p>A soft offer: <a href="https://example.com/trial">try it free for a month</a>, no card needed.</p>'),
]


async def create_welcome_sequence(client: httpx.AsyncClient) -> str:
    steps: list[dict[str, object]] = []
    waits = [{"days": 2}, {"days": 3}, {"days": 3}, {"days": 4}]
    for index, (key, subject, html) in enumerate(WELCOME_EMAILS):
        response = await client.post("/templates", json={"name": f"welcome-{key}", "subject": subject, "html": html})
        assert response.status_code == 201, response.text
        steps.append({"id": key, "email": {"template_id": response.json()["id"]}})
        if index < len(waits):
            steps.append({"wait": waits[index]})

    definition = {"name": "Welcome", "trigger": {"type": "manual"}, "timezone": "Europe/Berlin", "steps": steps}
    created = await client.post("/sequences", json=definition)
    assert created.status_code == 201, created.text
    sequence_id: str = created.json()["id"]
    activated = await client.post(f"/sequences/{sequence_id}/activate")
    assert activated.json()["status"] == "active"
    return sequence_id


async def test_welcome_sequence_sends_five_emails_in_order(api, kit_sink: tuple[Runtime, KitSink]) -> None:
    _, client = api
    runtime, sink = kit_sink
    clock.freeze(START)
    sequence_id = await create_welcome_sequence(client)
    contact_id = await add_contact(runtime, "ada@example.com", first_name="Ada", company={"name": "Lovelace Ltd"})

    enrolled = await client.post(f"/sequences/{sequence_id}/enrollments", json={"contact_id": contact_id})
    assert enrolled.status_code == 201, enrolled.text
    stops = await live_through(runtime, START + timedelta(days=30), sequence_id=sequence_id)

    received = sink.to("ada@example.com")
    subjects = [message["Subject"] for message in received]
    assert subjects == [
        "Thanks for joining, Ada",
        "The guide our customers use most",
        "How Lovelace Ltd could save a day a week",
        "Is it hard to switch?",
        "A month on us, Ada",
    ]
    sent_at = [parsedate_to_datetime(message["Date"]) for message in received]
    assert sent_at == [START + timedelta(days=days) for days in (0, 2, 5, 8, 12)]
    assert stops == sent_at[1:]
    assert len({message["Message-ID"] for message in received}) == 5


async def test_welcome_emails_carry_content_and_unsubscribe(api, kit_sink: tuple[Runtime, KitSink]) -> None:
    _, client = api
    runtime, sink = kit_sink
    clock.freeze(START)
    sequence_id = await create_welcome_sequence(client)
    contact_id = await add_contact(runtime, "grace@example.com")

    await client.post(f"/sequences/{sequence_id}/enrollments", json={"contact_id": contact_id})
    await live_through(runtime, START + timedelta(days=30), sequence_id=sequence_id)

    received = sink.to("grace@example.com")
    assert received[0]["Subject"] == "Thanks for joining, friend"
    html = [message.get_body(("html",)).get_content() for message in received]
    text = [message.get_body(("plain",)).get_content() for message in received]
    assert "Hi there, thank you for signing up." in html[0]
    assert "/t/c/" in html[1]
    assert "https://example.com/guide" in text[1]
    assert "a team like yours" in received[2]["Subject"]
    for message in received:
        assert message["List-Unsubscribe"].startswith("<http://127.0.0.1:8000/u/")
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    report = (await client.get(f"/sequences/{sequence_id}/report")).json()
    assert [step["sent"] for step in report["steps"]] == [1, 1, 1, 1, 1]
    assert report["finished"] is True
    assert report["enrolments"] == {"completed": 1}
