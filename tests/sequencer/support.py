"""Helpers for the sequencer's service tests: an isolated database, an SMTP sink, events, the clock.

The sequencer's tests run on a database of their own (SQLite file, or a PostgreSQL database when
NURTURE_TEST_BACKEND=postgres) and a queue namespace of their own. The platform's worker processes
share the session's sequencer database, and their sweep would otherwise send these tests' emails
to the platform's sink.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope
from sqlmodel import col, func, select

from services.kit import clock
from services.kit.contracts import EventEnvelope
from services.sequencer.enrolments.models import Enrolment, StepRun
from services.sequencer.enrolments.runtime import Runtime
from services.sequencer.enrolments.tasks import sweep_once
from services.sequencer.settings import SequencerSettings
from services.sequencer.worker import event_consumer
from services.cli.supervisor import free_port
from tests.support.environment import TestEnvironment

CONSUMER = event_consumer()


@dataclass
class SinkHandler:
    """An SMTP server's handler that keeps messages in memory and can refuse chosen recipients.

    `replies` maps a recipient to the replies its next RCPT commands get, e.g. ["454 4.7.0 Try later"];
    once they are used up the recipient is accepted.
    """

    replies: dict[str, list[str]] = field(default_factory=dict)
    raw: list[bytes] = field(default_factory=list)
    rcpt_calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    _parsed: list[EmailMessage] = field(default_factory=list)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Envelope, address: str, options: list[str]) -> str:
        self.rcpt_calls[address] += 1
        queued = self.replies.get(address)
        if queued:
            return queued.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        data = envelope.original_content or envelope.content
        # Parsed only when a test reads them, so a burst of messages costs the sending worker little CPU.
        self.raw.append(data if isinstance(data, bytes) else str(data).encode())
        return "250 Message accepted for delivery"

    @property
    def messages(self) -> list[EmailMessage]:
        received = list(self.raw)
        for message in received[len(self._parsed) :]:
            self._parsed.append(message_from_bytes(message, policy=policy.default))  # type: ignore[arg-type]
        return self._parsed[: len(received)]

    def to(self, address: str) -> list[EmailMessage]:
        return [message for message in self.messages if message["To"] == address]


@dataclass
class Sink:
    handler: SinkHandler
    controller: Controller
    port: int


def start_sink() -> Sink:
    handler = SinkHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    return Sink(handler, controller, port)


def sequencer_settings(database_url: str, namespace: str, **overrides: Any) -> SequencerSettings:
    values: dict[str, Any] = {"database_url": database_url, "NURTURE_NAMESPACE": namespace, **overrides}
    return SequencerSettings(**values)


def _envelope(topic: str, payload: dict[str, Any], occurred_at: datetime | None = None) -> EventEnvelope:
    return EventEnvelope(
        id=uuid.uuid4().hex, topic=topic, producer="contacts", occurred_at=occurred_at or clock.now(), payload=payload
    )


def _context(runtime: Runtime) -> dict[str, Any]:
    return {"settings": runtime.settings, "redis": runtime.redis, "clients": {}, "outbox": runtime.outbox}


async def deliver(runtime: Runtime, topic: str, payload: dict[str, Any], *, occurred_at: datetime | None = None) -> str:
    """Apply one published event through the sequencer's real consumer."""
    return await CONSUMER.apply(runtime.db, _envelope(topic, payload, occurred_at), _context(runtime))


async def deliver_batch(runtime: Runtime, events: list[tuple[str, dict[str, Any]]]) -> dict[str, int]:
    """Apply events as one batch, as the worker's `consume_events` job does; count the outcomes."""
    envelopes = [_envelope(topic, payload) for topic, payload in events]
    return dict(await CONSUMER.apply_batch(runtime.db, envelopes, _context(runtime)))


def snapshot(contact_id: str, email: str, **fields: Any) -> dict[str, Any]:
    return {
        "contact": {
            "id": contact_id,
            "email": email,
            "first_name": fields.get("first_name"),
            "last_name": fields.get("last_name"),
            "timezone": fields.get("timezone"),
            "attributes": fields.get("attributes", {}),
            "company": fields.get("company"),
            "stage": fields.get("stage", "lead"),
            "consent": fields.get("consent", {"status": "subscribed"}),
        }
    }


async def add_contact(runtime: Runtime, email: str | None = None, **fields: Any) -> str:
    """Copy a new contact into the sequencer the way contact.changed does; return its id."""
    contact_id = uuid.uuid4().hex
    await deliver(runtime, "contact.changed", snapshot(contact_id, email or f"{contact_id[:10]}@example.com", **fields))
    return contact_id


def timeline_event(contact_id: str, kind: str, properties: dict[str, Any], occurred_at: datetime | None = None) -> dict[str, Any]:
    at = (occurred_at or clock.now()).isoformat()
    return {
        "event": {
            "id": uuid.uuid4().hex,
            "contact_id": contact_id,
            "type": kind,
            "occurred_at": at,
            "received_at": at,
            "properties": properties,
        }
    }


async def drive(runtime: Runtime, *, rounds: int = 50) -> dict[str, int]:
    """Sweep until no due step run is left that can make progress; return the outcomes."""
    totals: dict[str, int] = defaultdict(int)
    for _ in range(rounds):
        counts = await sweep_once(runtime)
        for outcome, count in counts.items():
            totals[outcome] += count
        progressed = sum(count for outcome, count in counts.items() if outcome not in {"in_flight", "busy", "not_due"})
        if not progressed:
            return dict(totals)
    raise AssertionError(f"steps still due after {rounds} sweeps: {dict(totals)}")


async def live_through(runtime: Runtime, until: datetime, *, sequence_id: str) -> list[datetime]:
    """Move the frozen clock from due time to due time of one sequence up to `until`, running what falls due.

    Returns the instants the clock stopped at, so a test can see that nothing ran in between.
    """
    stops: list[datetime] = []
    while True:
        await drive(runtime)
        async with runtime.db.session() as session:
            query = (
                select(func.min(StepRun.due_at))
                .join(Enrolment, col(Enrolment.id) == col(StepRun.enrolment_id))
                .where(Enrolment.sequence_id == sequence_id)
                .where(col(StepRun.state) == "scheduled", col(StepRun.due_at) > clock.now())
            )
            next_due = (await session.exec(query)).one()
        if next_due is None or next_due > until:
            return stops
        clock.freeze(next_due)
        stops.append(next_due)
