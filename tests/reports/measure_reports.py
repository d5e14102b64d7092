"""Time the contact reports on a generated funnel of 45,000 contacts (run by hand, not by pytest).

    .venv/bin/python -m tests.reports.measure_reports [DATABASE_URL]

Each report runs three times and the best time is printed. Without an argument it uses a new SQLite file in a temporary folder. A PostgreSQL URL names an
empty database that the script migrates and fills (drop it afterwards). Every generated contact
starts as a subscriber. Then 70% become leads, 30% of those MQLs, 40% of MQLs SQLs, half of those
opportunities and half of those customers. A tenth of the contacts that stop at MQL are
disqualified. Half of the contacts get two sequence emails and every contact three page views.
"""

import asyncio
import random
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from services.contacts.people.models import Contact
from services.contacts.reports.queries import Window, funnel_counts, nurture_counts, stage_durations
from services.contacts.stages.models import StageChange
from services.contacts.timeline.models import TimelineEvent
from services.kit.db import Database
from services.kit.migrations import upgrade

CONTACTS = 45_000
START = datetime(2024, 1, 1, tzinfo=UTC)


def _path(rng: random.Random) -> list[str]:
    stages = ["subscriber"]
    for stage, share in (("lead", 0.7), ("mql", 0.3), ("sql", 0.4), ("opportunity", 0.5), ("customer", 0.5)):
        if rng.random() >= share:
            break
        stages.append(stage)
    if stages[-1] == "mql" and rng.random() < 0.1:
        stages.append("disqualified")
    return stages


def generate(rng: random.Random) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    contacts, history, events = [], [], []
    for number in range(CONTACTS):
        contact_id = uuid.UUID(int=rng.getrandbits(128)).hex
        at = START + timedelta(minutes=rng.randrange(0, 525_600))
        stages = _path(rng)
        previous = None
        for stage in stages:
            history.append({"contact_id": contact_id, "from_stage": previous, "to_stage": stage, "kind": "forward", "actor": "measure", "at": at})
            previous = stage
            at += timedelta(hours=rng.randrange(1, 2000))
        created = history[-len(stages)]["at"]
        contacts.append({
            "id": contact_id, "email": f"c{number}@example.com", "email_key": f"c{number}@example.com",
            "stage": stages[-1], "attributes": {}, "scores": {}, "created_at": created, "updated_at": at,
        })
        kinds = ["page_view"] * 3 + (["email_sent"] * 2 if number % 2 == 0 else [])
        for index, kind in enumerate(kinds):
            properties = {"sequence_id": "seq_measure"} if kind == "email_sent" else {"url": "/pricing"}
            events.append({
                "id": f"{contact_id}-{index}", "contact_id": contact_id, "type": kind, "properties": properties,
                "occurred_at": created + timedelta(hours=index + 1), "received_at": created,
            })
    return contacts, history, events


async def measure(url: str) -> None:
    db = Database(url)
    contacts, history, events = generate(random.Random(7))
    async with db.session() as session:
        for table, rows in ((Contact, contacts), (StageChange, history), (TimelineEvent, events)):
            for start in range(0, len(rows), 5000):
                await session.exec(insert(table), params=rows[start : start + 5000])  # type: ignore[call-overload]
        await session.commit()
    if db.dialect == "postgresql":
        async with db.engine.connect() as connection:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            await connection.exec_driver_sql("VACUUM ANALYZE")
    print(f"{db.dialect}: {len(contacts)} contacts, {len(history)} stage entries, {len(events)} timeline events")

    for name, report in (("funnel", funnel_counts), ("stage-times", stage_durations), ("nurture-impact", nurture_counts)):
        for window in (Window(), Window(since=START + timedelta(days=100), until=START + timedelta(days=200))):
            timings = []
            for _ in range(3):
                async with db.session() as session:
                    started = time.perf_counter()
                    await report(session, window)
                    timings.append(time.perf_counter() - started)
            label = "window" if window.given else "all"
            print(f"  {name:15} {label:7} best of 3: {min(timings) * 1000:6.0f} ms")
    await db.dispose()


def main() -> None:
    if len(sys.argv) > 1:
        url = sys.argv[1]
    else:
        url = f"sqlite+aiosqlite:///{Path(tempfile.mkdtemp()) / 'contacts.db'}"
    upgrade("contacts", url)
    asyncio.run(measure(url))


if __name__ == "__main__":
    main()
