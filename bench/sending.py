"""Sending and scheduling: personalised emails of a sequence that fall due together, sent to the SMTP sink.

Both enrol contacts by hand in a sequence of a wait and one email, with the platform clock frozen,
so every due time is known exactly. Sending enrols all at one instant and measures messages per
second from the due time to the last message the sink accepted. The bare floor then sends the same
messages, read back from the sink, with a plain aiosmtplib loop. Scheduling enrols the contacts in
one-second slices, so their emails fall due spread over `schedule_spread_s` seconds, and measures
each email's sent time minus its due time.

Moving the clock over the wait leaves each step's deferred arq job a day away in wall-clock time,
so the worker's sweep (every NURTURE_SWEEP_INTERVAL_MS, 500 ms by default) finds the due steps,
as it does after any clock move. The email step then runs from the job its wait step enqueues.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.utils import getaddresses
from pathlib import Path
from typing import Any

from bench.context import RunContext
from bench.cpu import cpu_ms_per_item, service_cpu
from bench.floor import send_floor
from bench.results import Figure, Target, percentile
from bench.workload import TEMPLATE, email_of, sent_count, sent_messages
from services.kit import clock

ENROL_IN_FLIGHT = 16
# Platform time between releasing the clock and the first due time, so no step is late on release.
RELEASE_LEAD = timedelta(seconds=2)


async def create_template(ctx: RunContext) -> str:
    template = await ctx.client.post("/v1/templates", TEMPLATE)
    return str(template["id"])


async def create_sequence(ctx: RunContext, name: str, template_id: str, wait: dict[str, Any]) -> str:
    """Create and activate a manual sequence: the wait, then one email."""
    body = {
        "name": name,
        "trigger": {"type": "manual"},
        "steps": [{"id": "wait", "wait": wait}, {"id": "note", "email": {"template_id": template_id}}],
    }
    sequence = await ctx.client.post("/v1/sequences", body)
    await ctx.client.post(f"/v1/sequences/{sequence['id']}/activate")
    return str(sequence["id"])


async def enrol(ctx: RunContext, sequence_id: str, contact_ids: list[str], task: Any) -> None:
    queue: asyncio.Queue[str] = asyncio.Queue()
    for contact_id in contact_ids:
        queue.put_nowait(contact_id)

    async def worker() -> None:
        while not queue.empty():
            await ctx.client.post(f"/v1/sequences/{sequence_id}/enrollments", {"contact_id": queue.get_nowait()})
            ctx.progress.advance(task)

    await asyncio.gather(*(worker() for _ in range(ENROL_IN_FLIGHT)))


def contacts_for(ctx: RunContext, first: int, count: int) -> list[str]:
    return [ctx.contact_ids_by_email[email_of(index)] for index in range(first, first + count)]


def frozen_start() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def sink_files(folder: Path) -> set[Path]:
    return set(folder.glob("*.eml")) if folder.exists() else set()


def envelope_of(path: Path) -> tuple[str, list[str], bytes]:
    raw = path.read_bytes()
    message = message_from_bytes(raw, policy=policy.default)
    recipients = [address for _, address in getaddresses([str(message["To"])])]
    _, sender = getaddresses([str(message["From"])])[0]
    return sender, recipients, raw


async def run_sending(ctx: RunContext, template_id: str, first_contact: int, label: str, *, with_floor: bool) -> float:
    """Send `send_contacts` emails that fall due at one instant; return messages per second.

    With `with_floor` it also runs the bare loop on the same messages and adds the figure.
    """
    count = ctx.scale.send_contacts
    sequence_id = await create_sequence(ctx, f"Benchmark: {label}", template_id, {"minutes": 1})
    start = frozen_start()
    clock.freeze(start)
    await enrol(ctx, sequence_id, contacts_for(ctx, first_contact, count), ctx.task(f"{label}: enrolments", count))

    before = sink_files(ctx.stack.mail_dir)
    due = start + timedelta(minutes=1)
    cpu_before = service_cpu(ctx)
    clock.travel_to(due - RELEASE_LEAD)
    task = ctx.task(f"{label}: emails sent", count)
    await ctx.wait_for(lambda: sent_count(ctx.sequencer, sequence_id), count, task, what=label)
    cpu_ms = cpu_ms_per_item(cpu_before, service_cpu(ctx), count)

    messages = await sent_messages(ctx.sequencer, sequence_id)
    last = max(message.sent_at for message in messages if message.sent_at is not None)
    rate = count / (last - due).total_seconds()
    if not with_floor:
        return rate

    new_files = sorted(sink_files(ctx.stack.mail_dir) - before)
    bare_task = ctx.task("sending floor: bare aiosmtplib loop", 1)
    envelopes = [envelope_of(path) for path in new_files]
    elapsed = await send_floor("127.0.0.1", ctx.stack.smtp_port, envelopes)
    ctx.progress.update(bare_task, completed=1)
    ctx.report.add(Figure(
        "sending", "emails sent, due to accepted by the sink", rate, "emails/s", floor=len(envelopes) / elapsed,
        ratio_target=Target(0.5, True, "≥ ½ of the bare loop"),
        note=f"{count:,} personalised emails due at one instant; the floor sends the same {len(envelopes):,} messages",
    ))
    for name, value in sorted(cpu_ms.items(), key=lambda item: -item[1]):
        ctx.report.add(Figure(
            "sending", f"{name} CPU per email", value, "ms",
            note="CPU time of the process from the release of the clock to the last email sent, divided by the emails",
        ))
    return rate


async def run_scheduling(ctx: RunContext, template_id: str, first_contact: int) -> None:
    """Enrol contacts so their emails fall due over `schedule_spread_s` seconds; add the lateness figures."""
    count, spread = ctx.scale.schedule_contacts, ctx.scale.schedule_spread_s
    sequence_id = await create_sequence(ctx, "Benchmark: scheduling", template_id, {"days": 1})
    contacts = contacts_for(ctx, first_contact, count)
    start = frozen_start()
    task = ctx.task("scheduling: enrolments", count)

    due_at: dict[str, datetime] = {}
    for second in range(spread):
        part = contacts[second * count // spread : (second + 1) * count // spread]
        clock.freeze(start + timedelta(seconds=second))
        await enrol(ctx, sequence_id, part, task)
        for contact_id in part:
            due_at[contact_id] = start + timedelta(days=1, seconds=second)

    clock.travel_to(start + timedelta(days=1) - RELEASE_LEAD)
    sent_task = ctx.task("scheduling: emails sent", count)
    await ctx.wait_for(lambda: sent_count(ctx.sequencer, sequence_id), count, sent_task, what="scheduling")

    lateness = [
        (message.sent_at - due_at[message.contact_id]).total_seconds()
        for message in await sent_messages(ctx.sequencer, sequence_id)
        if message.sent_at is not None
    ]
    note = f"{count:,} emails due over {spread} s"
    for share, name in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99"), (1.0, "max")):
        target = Target(2.0, False, "< 2 s") if name == "p99" else None
        ctx.report.add(Figure("scheduling", f"lateness {name}", percentile(lateness, share), "s", target=target, note=note))
