"""A small funnel whose every report figure is worked out by hand below.

Seven contacts are created at `base` (a random instant centuries ahead, so the cohort window holds
only them) and moved at fixed hours after it, with the platform clock frozen at each move:

| contact | stages (hours after base)                                       | sequence email         |
| ------- | --------------------------------------------------------------- | ---------------------- |
| ann     | subscriber 0, lead 10, mql 30, sql 40, opportunity 100, customer 200 | at 5, before customer |
| bob     | subscriber 0, lead 20, mql 50, lead 60 (sales rejection)        | at 25                  |
| dan     | subscriber 0, mql 5, disqualified 15                            | none (one email_sent without a sequence) |
| eve     | subscriber 0                                                    | at 1, but never a lead |
| fay     | subscriber 0, lead 1, customer 2                                | at 3, after customer   |
| gus     | subscriber 0, lead 3                                            | at 4                   |
"""

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from services.kit import clock

HOUR = 3600.0

# (hours after base, target stage, reason) per contact, in the order they happen.
MOVES: dict[str, list[tuple[float, str, str | None]]] = {
    "ann": [(10, "lead", None), (30, "mql", None), (40, "sql", None), (100, "opportunity", None), (200, "customer", None)],
    "bob": [(20, "lead", None), (50, "mql", None), (60, "lead", "no budget this year")],
    "dan": [(5, "mql", None), (15, "disqualified", "a competitor")],
    "eve": [],
    "fay": [(1, "lead", None), (2, "customer", None)],
    "gus": [(3, "lead", None)],
}
SEQUENCE_EMAILS: dict[str, float] = {"ann": 5, "bob": 25, "eve": 1, "fay": 3, "gus": 4}
# An email_sent event without a sequence_id, such as a newsletter tracked by the caller.
OTHER_EMAILS: dict[str, float] = {"dan": 6}

EXPECTED_CURRENT = {
    "subscriber": 1, "lead": 2, "mql": 0, "sql": 0, "opportunity": 0, "customer": 2, "disqualified": 1,
}
EXPECTED_REACHED = {
    "subscriber": 6, "lead": 5, "mql": 4, "sql": 2, "opportunity": 2, "customer": 2, "disqualified": 1,
}
EXPECTED_CONVERSIONS = {
    ("subscriber", "lead"): 5 / 6,
    ("lead", "mql"): 4 / 5,
    ("mql", "sql"): 2 / 4,
    ("sql", "opportunity"): 1.0,
    ("opportunity", "customer"): 1.0,
}
# stage: (completed stays, open stays, median hours, p90 hours); completed stays in hours:
# subscriber 1, 3, 5, 10, 20; lead 1, 20, 30; mql 10, 10, 10; sql 60; opportunity 100.
EXPECTED_STAGE_TIMES: dict[str, tuple[int, int, float | None, float | None]] = {
    "subscriber": (5, 1, 5.0, 16.0),
    "lead": (3, 2, 20.0, 28.0),
    "mql": (3, 0, 10.0, 10.0),
    "sql": (1, 0, 60.0, 60.0),
    "opportunity": (1, 0, 100.0, 100.0),
    "customer": (0, 2, None, None),
    "disqualified": (0, 1, None, None),
}
# Leads: ann, bob, dan, fay, gus. Nurtured: ann, bob, gus (fay's email came after she became a customer).
EXPECTED_NURTURED = {"leads": 3, "customers": 1, "conversion_rate": 1 / 3}
EXPECTED_NOT_NURTURED = {"leads": 2, "customers": 1, "conversion_rate": 1 / 2}


def random_base() -> datetime:
    """Return a random whole hour between the years 2100 and 7500, far from other tests' data."""
    start = datetime(2100, 1, 1, tzinfo=UTC)
    return start + timedelta(hours=random.randrange(0, 47_000_000))


@dataclass
class Funnel:
    base: datetime
    ids: dict[str, str] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)

    @property
    def window(self) -> dict[str, str]:
        """The query parameters of a window holding only this data set's contacts and stays."""
        return {"since": self.base.isoformat(), "until": (self.base + timedelta(days=30)).isoformat()}


async def _check(response: httpx.Response, *statuses: int) -> dict[str, Any]:
    assert response.status_code in statuses, response.text
    return response.json() if response.content else {}


async def build_funnel(client: httpx.AsyncClient, prefix: str = "", first_names: dict[str, str] | None = None) -> Funnel:
    """Create the data set through the contacts API at `prefix` ("" internal, "/v1" on the gateway)."""
    funnel = Funnel(base=random_base())
    clock.freeze(funnel.base)
    tag = uuid.uuid4().hex[:10]
    for name in MOVES:
        first_name = (first_names or {}).get(name, name.title())
        body = {"email": f"{name}-{tag}@example.com", "first_name": first_name, "last_name": "Report"}
        contact = await _check(await client.post(f"{prefix}/contacts", json=body), 201)
        funnel.ids[name] = contact["id"]
        funnel.names[name] = body["email"]

    steps: list[tuple[float, str, str, Any]] = []
    for name, moves in MOVES.items():
        steps.extend((hours, name, "move", (stage, reason)) for hours, stage, reason in moves)
    steps.extend((hours, name, "email", "sequence") for name, hours in SEQUENCE_EMAILS.items())
    steps.extend((hours, name, "email", None) for name, hours in OTHER_EMAILS.items())
    for hours, name, kind, detail in sorted(steps, key=lambda step: step[0]):
        clock.freeze(funnel.base + timedelta(hours=hours))
        if kind == "move":
            await _move(client, prefix, funnel.ids[name], *detail)
        else:
            await _email(client, prefix, funnel.ids[name], with_sequence=detail is not None)
    return funnel


async def _move(client: httpx.AsyncClient, prefix: str, contact_id: str, stage: str, reason: str | None) -> None:
    body: dict[str, Any] = {"stage": stage, "actor": "sales:jane@example.com"}
    if reason is not None:
        body["reason"] = reason
    await _check(await client.post(f"{prefix}/contacts/{contact_id}/stage", json=body), 200, 201)


async def _email(client: httpx.AsyncClient, prefix: str, contact_id: str, *, with_sequence: bool) -> None:
    properties: dict[str, Any] = {"message_id": f"<{uuid.uuid4().hex}@example.com>", "subject": "Hello"}
    if with_sequence:
        properties["sequence_id"] = "seq_report_test"
    body = {"id": uuid.uuid4().hex, "contact_id": contact_id, "type": "email_sent", "properties": properties}
    await _check(await client.post(f"{prefix}/events", json=body), 202)
