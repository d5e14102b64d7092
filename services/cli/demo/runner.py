"""`nurture demo`: the platform's main job on real leads, from an empty platform to the nurturing summary.

Every step goes through the public API. The demo installs the playbook (attributes, score rules,
templates, a segment and a sequence), imports the leads and their call history, and waits for the
workers to score it. Then it lives through a few weeks on a moved clock. Each simulated step of the
clock lets the workers send what fell due, lets the recipients read their email and lets sales
review the MQLs. At the end the clock stops, the real outcome is recorded, and the summary is read
from the reports.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from services.cli.demo import ingest
from services.cli.demo.backlog import Backlog
from services.cli.demo.client import DemoClient
from services.cli.demo.dataset import DEFAULT_CONTACTS, ROWS, Lead, sample_leads
from services.cli.demo.errors import DemoError
from services.cli.demo.mailbox import Delivered, Mailbox
from services.cli.demo.platform import Target
from services.cli.demo.playbook import RULE_SET, TEMPLATES, segment_body, sequence_body
from services.cli.demo.recipients import Recipients, mail_client
from services.cli.demo.sales import SalesTeam
from services.cli.demo.summary import Cohort, Reports, Summary, print_summary, read_reports, summarise
from services.kit import clock

DEFAULT_WEEKS = 4
DEFAULT_MODEL = "default"
DEFAULT_SEED = 2012
TICK = timedelta(hours=12)
# A step of the clock ends once no job has been due for this long. Work still running then finishes
# during the next step, so a short settle makes the run faster without losing anything. The settle
# also lasts TICK_SETTLE_AFTER_SWEEP_S longer than the platform's sweep interval, so that a step
# does not end before the sweep has seen it.
TICK_SETTLE_S = 0.3
TICK_SETTLE_AFTER_SWEEP_S = 0.2
FINAL_SETTLE_S = 2.0
# How long the sink and the sequence report may disagree without either changing before the demo
# reports the difference.
SINK_AGREEMENT_S = 60.0


@dataclass(frozen=True)
class DemoOptions:
    contacts: int = DEFAULT_CONTACTS
    weeks: int = DEFAULT_WEEKS
    model: str = DEFAULT_MODEL
    seed: int = DEFAULT_SEED


@dataclass
class DemoResult:
    """The printed summary, the reports it was read from, and the run's bounds and phase durations."""

    summary: Summary
    reports: Reports
    cohort: Cohort
    ended_at: datetime
    model: str
    sequence_id: str
    emails_in_sink: int
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class _Playbook:
    sequence_id: str
    segment_id: str


class Demo:
    """One run of the demo against a running platform."""

    def __init__(self, target: Target, options: DemoOptions, console: Console) -> None:
        if not os.environ.get("NURTURE_CLOCK_FILE"):
            raise DemoError("NURTURE_CLOCK_FILE is not set: the demo moves the platform clock through that file")
        if not 1 <= options.contacts <= ROWS:
            raise DemoError(f"--contacts must be from 1 to {ROWS:,}, got {options.contacts}")
        if options.weeks < 1:
            raise DemoError(f"--weeks must be 1 or more, got {options.weeks}")

        self.target = target
        self.options = options
        self.console = console
        self.leads: list[Lead] = sample_leads(options.contacts)
        self.by_email = {lead.email: lead for lead in self.leads}
        self.rng = random.Random(options.seed)
        self.timings: dict[str, float] = {}
        # The enrolment header of every email in the sink to one of the demo's leads, from any run.
        self.delivered_enrolments: list[str | None] = []
        self.emails_in_sink = 0

    @contextmanager
    def _timed(self, phase: str) -> Iterator[None]:
        started = time.monotonic()
        yield
        self.timings[phase] = round(time.monotonic() - started, 1)
        self.console.log(f"{phase} done in {self.timings[phase]:.0f} s")

    async def run(self) -> DemoResult:
        """Run every step, print the summary and return it with the reports it was read from."""
        client = DemoClient(self.target.gateway_url, self.target.api_key)
        backlog = Backlog(self.target.redis_url, self.target.namespace)
        try:
            with _progress(self.console) as progress:
                result = await self._run(client, backlog, progress)
        finally:
            await backlog.close()
            await client.close()

        print_summary(self.console, result.summary)
        self._check_sink(result.summary)
        return result

    async def _run(self, client: DemoClient, backlog: Backlog, progress: Progress) -> DemoResult:
        since = clock.now()
        mailbox = Mailbox(self.target.mail_dir)
        mailbox.skip_existing()

        with self._timed("playbook"):
            playbook = await self._install_playbook(client)
        with self._timed("import"):
            await self._import(client, progress)
        cohort = Cohort(since=since, until=clock.now())
        with self._timed("history"):
            history_events = await self._send_history(client, progress, since)
        with self._timed("catch-up"):
            await _wait(backlog, progress, "catching up: scoring, welcome emails", activity=mailbox.stamp)
        with self._timed("nurture"):
            await self._nurture(client, backlog, mailbox, progress)
        with self._timed("reports"):
            ended_at = clock.now()
            clock.freeze(ended_at)
            try:
                reports = await self._finish(client, backlog, mailbox, progress, playbook, cohort)
            finally:
                clock.travel_to(ended_at)

        summary = summarise(reports, history_events=history_events)
        return DemoResult(
            summary, reports, cohort, ended_at, self.options.model, playbook.sequence_id, self.emails_in_sink, self.timings
        )

    async def _install_playbook(self, client: DemoClient) -> _Playbook:
        await ingest.define_attributes(client)
        await client.put(f"/v1/scoring/models/{self.options.model}", RULE_SET)
        template_ids = {key: (await client.post("/v1/templates", body))["id"] for key, body in TEMPLATES.items()}
        segment = await client.post("/v1/segments", segment_body())
        sequence = await client.post("/v1/sequences", sequence_body(template_ids, segment["id"]))
        await client.post(f"/v1/sequences/{sequence['id']}/activate")
        self.console.print(
            f"installed score model [bold]{self.options.model}[/], {len(template_ids)} templates, "
            f"segment {segment['id']} and sequence {sequence['id']}"
        )
        return _Playbook(sequence_id=sequence["id"], segment_id=segment["id"])

    async def _import(self, client: DemoClient, progress: Progress) -> None:
        task = progress.add_task("import (CSV rows)", total=len(self.leads))
        content, mapping = ingest.contacts_csv(self.leads)
        await ingest.import_csv(client, content, mapping, _set(progress, task), name="bank-marketing-leads.csv")

    async def _send_history(self, client: DemoClient, progress: Progress, start: datetime) -> int:
        batches = ingest.history_batches(self.leads, start)
        task = progress.add_task("call history (events)", total=sum(len(batch) for batch in batches))
        return await ingest.send_history(client, batches, lambda sent: progress.advance(task, sent))

    async def _nurture(self, client: DemoClient, backlog: Backlog, mailbox: Mailbox, progress: Progress) -> None:
        ticks = int(timedelta(weeks=self.options.weeks) / TICK)
        ticks_per_day = max(1, int(timedelta(days=1) / TICK))
        sales = SalesTeam(client, self.by_email, self.rng)
        task = progress.add_task("nurturing (clock steps)", total=ticks)
        settle_s = max(TICK_SETTLE_S, self.target.sweep_interval_s + TICK_SETTLE_AFTER_SWEEP_S)
        unread = self._delivered(mailbox)
        async with mail_client(self.target.gateway_url) as http:
            recipients = Recipients(http, self.by_email, self.rng)
            for tick in range(1, ticks + 1):
                clock.advance(TICK)
                await recipients.read(unread)
                if tick % ticks_per_day == 0:
                    await sales.review(clock.now())
                await backlog.wait_until_idle(activity=mailbox.stamp, settle_s=settle_s)
                unread = self._delivered(mailbox)
                day = tick * TICK / timedelta(days=1)
                progress.update(
                    task,
                    advance=1,
                    description=(
                        f"day {day:.0f}: {len(self.delivered_enrolments):,} emails, "
                        f"{recipients.engagement.opened:,} opened, {sales.activity.accepted:,} SQLs"
                    ),
                )

    def _delivered(self, mailbox: Mailbox) -> list[Delivered]:
        messages = [message for message in mailbox.new_messages() if message.recipient in self.by_email]
        self.delivered_enrolments.extend(message.enrolment for message in messages)
        return messages

    async def _count_sequence_emails(self, client: DemoClient, mailbox: Mailbox, sequence_id: str) -> int:
        """Return how many emails in the sink belong to the sequence, once that agrees with its report.

        The clock is stopped, so the sends end. Until the last one is in, the report may count an
        email whose file the sink is still writing, so both are read again until they agree or
        stop changing.
        """
        enrolments = {item["id"] for item in await client.items(f"/v1/sequences/{sequence_id}/enrollments")}
        last, last_change = (-1, -1), time.monotonic()
        while True:
            self._delivered(mailbox)
            in_sink = sum(1 for enrolment in self.delivered_enrolments if enrolment in enrolments)
            report = await client.get(f"/v1/sequences/{sequence_id}/report")
            sent = sum(step["sent"] for step in report["steps"])
            if in_sink == sent:
                return in_sink
            if (in_sink, sent) != last:
                last, last_change = (in_sink, sent), time.monotonic()
            elif time.monotonic() - last_change > SINK_AGREEMENT_S:
                return in_sink
            await asyncio.sleep(1.0)

    async def _finish(
        self, client: DemoClient, backlog: Backlog, mailbox: Mailbox, progress: Progress, playbook: _Playbook,
        cohort: Cohort,
    ) -> Reports:
        await _wait(backlog, progress, "last sends", activity=mailbox.stamp, settle_s=FINAL_SETTLE_S)
        self.emails_in_sink = await self._count_sequence_emails(client, mailbox, playbook.sequence_id)

        content, mapping = ingest.outcome_csv(self.leads)
        if content.count(b"\n") > 1:
            task = progress.add_task("outcome import (CSV rows)", total=content.count(b"\n") - 1)
            await ingest.import_csv(client, content, mapping, _set(progress, task), name="term-deposit-outcome.csv")
            await _wait(backlog, progress, "outcome applied", settle_s=FINAL_SETTLE_S)

        outcomes = {lead.email: lead.subscribed for lead in self.leads}
        return await read_reports(
            client, cohort=cohort, sequence_id=playbook.sequence_id, model=self.options.model, outcomes=outcomes
        )

    def _check_sink(self, summary: Summary) -> None:
        if self.emails_in_sink == summary.emails_sent:
            self.console.print(f"[green]all {summary.emails_sent:,} emails the sequence sent are in the SMTP sink[/]")
            return
        raise DemoError(
            f"the sequence report counts {summary.emails_sent:,} emails sent, "
            f"but the SMTP sink holds {self.emails_in_sink:,} of its enrolments"
        )


@contextmanager
def _progress(console: Console) -> Iterator[Progress]:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        yield progress


def _set(progress: Progress, task: TaskID) -> Callable[[int], None]:
    return lambda completed: progress.update(task, completed=completed)


async def _wait(
    backlog: Backlog,
    progress: Progress,
    description: str,
    *,
    activity: Callable[[], int] | None = None,
    settle_s: float | None = None,
) -> None:
    """Show the platform's queued jobs going down until the workers are idle."""
    task = progress.add_task(f"{description} (jobs)", total=None)
    peak = 0

    def report(due: int) -> None:
        nonlocal peak
        peak = max(peak, due)
        progress.update(task, total=max(peak, 1), completed=peak - due)

    await backlog.wait_until_idle(report, activity=activity, settle_s=settle_s)
    progress.update(task, total=max(peak, 1), completed=max(peak, 1))
