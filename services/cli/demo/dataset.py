"""Reading the UCI Bank Marketing dataset shipped with the demo and turning rows into contacts and events.

Each row becomes a contact with typed attributes and a made-up address under example.com, plus
timeline events for its recorded contact history: one `call_made` per call of this campaign and,
when the bank had called the person before, one `earlier_campaign` event with the number of earlier
calls, the days since the last one and that campaign's outcome. The outcome `y` is returned beside the
contact and never stored on it; `duration` is dropped because it is known only after the call.
"""

import csv
import gzip
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import resources
from typing import Any

DATASET_FILE = "bank-marketing-full.csv.gz"
ROWS = 45_211
# The leads a demo takes by default. Four simulated weeks of 500 leads took 257 s on a busy two-core
# machine, so the whole dataset would take an estimated six hours at that rate.
DEFAULT_CONTACTS = 500
MISSING = "unknown"
TIMEZONE = "Europe/Lisbon"

# Types of the demo's attributes; the demo defines them through the API before importing.
ATTRIBUTES: dict[str, dict[str, Any]] = {
    "age": {"type": "number", "label": "Age"},
    "job": {"type": "string", "label": "Job type"},
    "marital": {"type": "string", "label": "Marital status"},
    "education": {"type": "string", "label": "Education level"},
    "credit_default": {"type": "boolean", "label": "Has credit in default"},
    "balance": {"type": "number", "label": "Average yearly balance (EUR)"},
    "housing_loan": {"type": "boolean", "label": "Has a housing loan"},
    "personal_loan": {"type": "boolean", "label": "Has a personal loan"},
    "contact_channel": {"type": "string", "label": "Channel of the last call"},
}

# The campaign's calls are spread over this many days before the demo starts.
CAMPAIGN_DAYS = 28


@dataclass(frozen=True)
class Lead:
    """One row of the dataset as the demo uses it."""

    row: int
    email: str
    attributes: dict[str, Any]
    campaign_calls: int
    earlier_calls: int
    days_since_earlier: int | None
    earlier_outcome: str | None
    subscribed: bool


def email_for(row: int) -> str:
    return f"lead{row:05d}@example.com"


def _yes_no(value: str) -> bool | None:
    return None if value == MISSING else value == "yes"


def _attributes(record: dict[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {
        "age": int(record["age"]),
        "job": record["job"],
        "marital": record["marital"],
        "education": record["education"],
        "credit_default": _yes_no(record["default"]),
        "balance": int(record["balance"]),
        "housing_loan": _yes_no(record["housing"]),
        "personal_loan": _yes_no(record["loan"]),
        "contact_channel": record["contact"],
    }
    return {name: value for name, value in values.items() if value is not None and value != MISSING}


def history_events(lead: Lead, *, start: datetime) -> list[dict[str, Any]]:
    """Return the timeline events of a lead's recorded history, all before `start`."""
    events: list[dict[str, Any]] = []
    # The calls share the campaign's days but the last one, which leaves room for the first call's
    # hour of up to 23:00, so even a lead called 63 times has its last call before `start`.
    spacing = timedelta(days=CAMPAIGN_DAYS - 1) / max(lead.campaign_calls, 1)
    first_call = start - timedelta(days=CAMPAIGN_DAYS) + timedelta(hours=lead.row % 24)
    for attempt in range(1, lead.campaign_calls + 1):
        events.append(
            {
                "id": f"demo-{lead.row}-call-{attempt}",
                "email": lead.email,
                "type": "call_made",
                "occurred_at": (first_call + spacing * (attempt - 1)).isoformat(),
                "properties": {"attempt": attempt, "channel": lead.attributes.get("contact_channel", "phone")},
            }
        )
    if lead.earlier_calls > 0:
        days = lead.days_since_earlier if lead.days_since_earlier is not None else CAMPAIGN_DAYS * 2
        properties: dict[str, Any] = {"calls": lead.earlier_calls, "days_since_last": days}
        if lead.earlier_outcome:
            properties["outcome"] = lead.earlier_outcome
        events.append(
            {
                "id": f"demo-{lead.row}-earlier",
                "email": lead.email,
                "type": "earlier_campaign",
                "occurred_at": (first_call - timedelta(days=days)).isoformat(),
                "properties": properties,
            }
        )
    return events


def sample_leads(count: int) -> list[Lead]:
    """Return `count` leads spread evenly over the file, or all of them.

    The rows run in date order from May 2008 to November 2010, and the share who subscribed grows
    over that time, so evenly spaced rows keep a small sample close to the whole.
    """
    if count >= ROWS:
        return list(read_leads())

    wanted = {ROWS * index // count + 1 for index in range(count)}
    return [lead for lead in read_leads() if lead.row in wanted]


def read_leads(limit: int | None = None) -> Iterator[Lead]:
    """Yield the dataset's rows as leads, in file order (the row number is the id)."""
    source = resources.files("services.cli.demo").joinpath("data", DATASET_FILE)
    with source.open("rb") as compressed, gzip.open(compressed, "rt", encoding="ascii", newline="") as text:
        reader = csv.DictReader(text, delimiter=";")
        for row, record in enumerate(reader, start=1):
            if limit is not None and row > limit:
                return
            pdays = int(record["pdays"])
            yield Lead(
                row=row,
                email=email_for(row),
                attributes=_attributes(record),
                campaign_calls=int(record["campaign"]),
                earlier_calls=int(record["previous"]),
                days_since_earlier=None if pdays < 0 else pdays,
                earlier_outcome=None if record["poutcome"] == MISSING else record["poutcome"],
                subscribed=record["y"] == "yes",
            )
