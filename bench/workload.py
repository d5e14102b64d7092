"""The benchmark's requests to the platform through the public API, and what it reads back.

Contacts are imported as CSV, events go in through `POST /v1/events/batch`, and enrolments through
`POST /v1/sequences/{id}/enrollments`. No public route reports when a worker finished with an event
or an email, so completion times are read from the scoring and sequencer databases. They are the
ledger row of the `page-view` rule (one per event) and the sent message of each enrolment.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import col, select

from services.cli.demo.client import DemoClient
from services.kit.db import Database
from services.scoring.scores.models import LedgerRow
from services.sequencer.sending.models import SentMessage

# This rule matches every page view and has no cap, and the ledger is unique per model, rule and
# event, so each event gets exactly one row of it: that row marks the event as scored.
EVENT_RULE = "page-view"
EMAIL_DOMAIN = "bench.example"
IMPORT_ROWS = 20_000
IMPORT_POLL_S = 0.5


def rule_set(pricing_points: int = 10) -> dict[str, Any]:
    """Return the rule set of the `default` model: fit from the address, engagement from page views.

    The MQL threshold is out of reach, so no stage change adds work that differs between runs.
    """
    return {
        "mql_threshold": 100_000,
        "decay": {"type": "half_life", "half_life_days": 30},
        "rules": [
            {"name": "bench-domain", "kind": "fit", "points": 5,
             "when": {"field": "email_domain", "op": "in", "value": [EMAIL_DOMAIN]}},
            {"name": EVENT_RULE, "kind": "engagement", "event": "page_view", "points": 1},
            {"name": "pricing-visit", "kind": "engagement", "event": "page_view", "points": pricing_points,
             "where": {"field": "properties.url", "op": "matches", "value": "/pricing"},
             "cap": {"max_points": 30}},
        ],
    }


TEMPLATE = {
    "name": "Benchmark: personal note",
    "subject": "A note for {{ contact.first_name | fallback('you') }}",
    "html": (
        "<html><body><p>Hello {{ contact.first_name | fallback('there') }} {{ contact.last_name | fallback('') }},</p>"
        "<p>Here is the guide you asked for, picked for {{ contact.email }}.</p>"
        '<p><a href="https://example.com/guide">Read the guide</a></p>'
        '<p style="font-size:12px"><a href="{{ unsubscribe_url }}">Unsubscribe</a></p></body></html>'
    ),
}


def email_of(index: int) -> str:
    return f"c{index:06d}@{EMAIL_DOMAIN}"


def contacts_csv(first: int, count: int) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["email", "first_name", "last_name", "stage", "consent"])
    for index in range(first, first + count):
        writer.writerow([email_of(index), f"Ann{index}", f"Lee{index % 977}", "lead", "subscribed"])
    return buffer.getvalue().encode()


async def import_contacts(client: DemoClient, count: int) -> None:
    """Import `count` subscribed leads in CSV files of at most IMPORT_ROWS rows, one after another."""
    mapping = {"email": "email", "first_name": "first_name", "last_name": "last_name", "stage": "stage", "consent": "consent"}
    for first in range(0, count, IMPORT_ROWS):
        content = contacts_csv(first, min(IMPORT_ROWS, count - first))
        files = {"file": (f"contacts-{first}.csv", content, "text/csv")}
        accepted = await client.post("/v1/imports", files=files, data={"mapping": json.dumps(mapping), "mode": "upsert"})
        while True:
            job = await client.get(f"/v1/imports/{accepted['id']}")
            if job["status"] == "failed":
                raise RuntimeError(f"import {job['id']} failed: {job['error']}")
            if job["status"] == "done":
                break
            await asyncio.sleep(IMPORT_POLL_S)
        if job["rejected"]:
            raise RuntimeError(f"import {job['id']} rejected {job['rejected']} rows: {job['failed'][:1]}")


def page_views(prefix: str, contacts: Sequence[int]) -> list[dict[str, Any]]:
    """Return one page view per contact; every fifth is a pricing page, which earns a second rule."""
    return [
        {"id": f"{prefix}-{number}", "email": email_of(index), "type": "page_view",
         "properties": {"url": "https://acme.example/pricing" if number % 5 == 0 else f"https://acme.example/blog/{number % 40}"}}
        for number, index in enumerate(contacts)
    ]


def batches(events: Sequence[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    return [list(events[index : index + size]) for index in range(0, len(events), size)]


async def post_batch(client: DemoClient, batch: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Post one batch and return its per-event results; raise when any event was rejected."""
    answer = await client.post("/v1/events/batch", {"events": list(batch)})
    rejected = [item for item in answer["items"] if item["status"] == "rejected"]
    if rejected:
        raise RuntimeError(f"the gateway rejected {len(rejected)} events, e.g. {rejected[0]['error']}")
    return answer["items"]  # type: ignore[no-any-return]


async def scored_count(scoring: Database, prefix: str) -> int:
    """Return how many events whose id starts with `prefix` have their ledger row."""
    query = select(func.count()).where(col(LedgerRow.rule) == EVENT_RULE, col(LedgerRow.event_id).startswith(f"{prefix}-"))
    async with scoring.session() as session:
        return int((await session.exec(query)).one())


async def scored_times(scoring: Database, prefix: str) -> dict[str, datetime]:
    """Return when each event of the run was scored (platform clock), by event id."""
    query = select(LedgerRow.event_id, LedgerRow.recorded_at).where(
        col(LedgerRow.rule) == EVENT_RULE, col(LedgerRow.event_id).startswith(f"{prefix}-")
    )
    async with scoring.session() as session:
        return {event_id: at for event_id, at in (await session.exec(query)).all() if event_id is not None}


async def sent_messages(sequencer: Database, sequence_id: str) -> list[SentMessage]:
    """Return the messages of a sequence that the SMTP server accepted."""
    query = select(SentMessage).where(col(SentMessage.sequence_id) == sequence_id, col(SentMessage.sent_at).is_not(None))
    async with sequencer.session() as session:
        return list((await session.exec(query)).all())


async def sent_count(sequencer: Database, sequence_id: str) -> int:
    query = select(func.count()).where(col(SentMessage.sequence_id) == sequence_id, col(SentMessage.sent_at).is_not(None))
    async with sequencer.session() as session:
        return int((await session.exec(query)).one())
