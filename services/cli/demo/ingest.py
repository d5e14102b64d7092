"""Loading the dataset through the public API: attributes, a CSV import, then each lead's call history.

Everything goes through the gateway as an integrator's code would: `PUT /v1/attributes/{name}`,
`POST /v1/imports` with a CSV file and a column mapping (then `GET /v1/imports/{id}` until done), and
`POST /v1/events/batch` with 1,000 events per call. A last import records, once the nurture period
is over, who really subscribed, so the score can be measured against it.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.cli.demo.client import DemoClient
from services.cli.demo.dataset import ATTRIBUTES, TIMEZONE, Lead, history_events
from services.cli.demo.errors import DemoError
from services.cli.demo.playbook import (
    DEMO_ATTRIBUTES,
    LEAD_SOURCE,
    OUTCOME_ATTRIBUTE,
    OUTCOME_DEFINITION,
    nurture_group,
)

IMPORT_STAGE = "lead"
IMPORT_CONSENT = "subscribed"
EVENT_BATCH_SIZE = 1000
# Batches in flight at once: the contacts service stores each batch in one transaction, so more
# than a couple only queue up behind each other.
PARALLEL_BATCHES = 2
IMPORT_POLL_S = 0.5

Progress = Callable[[int], None]


class IngestError(DemoError):
    """The import or the event batches did not store what the demo sent."""


@dataclass(frozen=True)
class ImportResult:
    import_id: str
    created: int
    updated: int
    rejected: int


async def define_attributes(client: DemoClient) -> None:
    """Define the dataset's typed attributes and the demo's own; defining one again changes nothing."""
    definitions = {**ATTRIBUTES, **DEMO_ATTRIBUTES, OUTCOME_ATTRIBUTE: OUTCOME_DEFINITION}
    for name, definition in definitions.items():
        await client.put(f"/v1/attributes/{name}", definition)


def contacts_csv(leads: Sequence[Lead]) -> tuple[bytes, dict[str, str]]:
    """Return the CSV file of the leads and its column mapping for `POST /v1/imports`."""
    columns = ["email", "stage", "consent", "timezone", *DEMO_ATTRIBUTES, *ATTRIBUTES]
    rows = [
        [lead.email, IMPORT_STAGE, IMPORT_CONSENT, TIMEZONE, LEAD_SOURCE, nurture_group(lead.row)]
        + [_cell(lead.attributes.get(name)) for name in ATTRIBUTES]
        for lead in leads
    ]
    mapping = {"email": "email", "stage": "stage", "consent": "consent", "timezone": "timezone"}
    mapping.update({name: f"attributes.{name}" for name in (*DEMO_ATTRIBUTES, *ATTRIBUTES)})
    return _csv(columns, rows), mapping


def outcome_csv(leads: Sequence[Lead]) -> tuple[bytes, dict[str, str]]:
    """Return the CSV that records who really subscribed, for the leads that did."""
    rows = [[lead.email, "true"] for lead in leads if lead.subscribed]
    return _csv(["email", OUTCOME_ATTRIBUTE], rows), {"email": "email", OUTCOME_ATTRIBUTE: f"attributes.{OUTCOME_ATTRIBUTE}"}


def _csv(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


async def import_csv(client: DemoClient, content: bytes, mapping: dict[str, str], progress: Progress, *, name: str) -> ImportResult:
    """Upload one CSV import and poll it to the end, reporting the rows handled so far."""
    files = {"file": (name, content, "text/csv")}
    data = {"mapping": json.dumps(mapping), "mode": "upsert"}
    accepted = await client.post("/v1/imports", files=files, data=data)

    while True:
        job = await client.get(f"/v1/imports/{accepted['id']}")
        progress(job["created"] + job["updated"] + job["rejected"] + job["duplicates"])
        if job["status"] == "failed":
            raise IngestError(f"import {job['id']} failed: {job['error']}")
        if job["status"] == "done":
            break
        await asyncio.sleep(IMPORT_POLL_S)

    if job["rejected"]:
        first = job["failed"][0]
        raise IngestError(f"import {job['id']} rejected {job['rejected']} rows, e.g. line {first['line']}: {first['detail']}")
    return ImportResult(job["id"], job["created"], job["updated"], job["rejected"])


def history_batches(leads: Sequence[Lead], start: datetime) -> list[list[dict[str, Any]]]:
    """Return every lead's history events in batches of at most EVENT_BATCH_SIZE."""
    events = [event for lead in leads for event in history_events(lead, start=start)]
    return [events[index : index + EVENT_BATCH_SIZE] for index in range(0, len(events), EVENT_BATCH_SIZE)]


async def send_history(client: DemoClient, batches: Sequence[list[dict[str, Any]]], progress: Progress) -> int:
    """Post the batches, a few at a time, and return how many events were stored or already known."""
    queue: asyncio.Queue[list[dict[str, Any]]] = asyncio.Queue()
    for batch in batches:
        queue.put_nowait(batch)
    stored = 0

    async def sender() -> None:
        nonlocal stored
        while not queue.empty():
            batch = queue.get_nowait()
            answer = await client.post("/v1/events/batch", {"events": batch})
            rejected = [item for item in answer["items"] if item["status"] == "rejected"]
            if rejected:
                raise IngestError(f"the platform rejected {len(rejected)} history events, e.g. {rejected[0]['error']}")
            stored += len(batch)
            progress(len(batch))

    await asyncio.gather(*(sender() for _ in range(PARALLEL_BATCHES)))
    return stored
