"""One benchmark run: start the platform, run every scenario in order, and stop and clean up.

The order matters. Contacts are imported first, so every later figure is taken with all of them
loaded. Ingest runs before anything moves the platform clock, rescore runs on the history ingest
left, memory is read before the second set of workers starts, and scale-out comes last.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from sqlmodel import select
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bench.context import RunContext
from bench.ingest import run_ingest, throughput
from bench.machine import describe
from bench.memory import run_memory
from bench.rescore import run_rescore
from bench.results import Figure, Report
from bench.sending import create_template, run_scheduling, run_sending
from bench.sizes import Scale
from bench.stack import Stack, StackConfig
from bench.workload import import_contacts, rule_set
from services.cli.demo.backlog import Backlog
from services.cli.demo.client import DemoClient
from services.kit import clock
from services.kit.db import Database, is_sqlite
from services.kit.migrations import ensure_database
from services.sequencer.facts.models import ContactFact

SCENARIOS = ("ingest", "rescore", "sending", "scheduling", "memory", "scale-out")

# Lets the second set of workers connect to Redis and the databases before the load starts; workers
# have no readiness probe of their own.
WORKER_START_S = 5.0


@dataclass(frozen=True)
class RunOptions:
    backend: str
    scale: Scale
    data_dir: Path
    postgres_url: str
    redis_url: str
    scale_out: bool = True
    pool_size: int | None = None
    # Scenarios to run, all when empty; the import of the contacts always runs.
    only: frozenset[str] = frozenset()

    def runs(self, scenario: str) -> bool:
        return not self.only or scenario in self.only


def run(options: RunOptions, console: Console) -> Report:
    """Run every scenario and return the report; the platform is stopped and cleaned up either way."""
    config = StackConfig(options.backend, options.data_dir, options.postgres_url, options.redis_url, pool_size=options.pool_size)
    stack = Stack(config, report=lambda line: console.print(f"[yellow]{line}[/]"))
    report = Report(options.backend, options.scale.name)
    if options.pool_size is not None:
        report.notes.append(f"Each service process ran with a database pool of {options.pool_size} (the default is 10).")
    try:
        asyncio.run(stack.prepare_databases())
        console.print(f"databases ready ({options.backend}); starting the platform in {options.data_dir}")
        stack.start()
        asyncio.run(_scenarios(stack, options, report, console))
    finally:
        stack.stop()
        asyncio.run(stack.clean_up())
    return report


async def _scenarios(stack: Stack, options: RunOptions, report: Report, console: Console) -> None:
    report.machine = await describe(options.backend, options.postgres_url, stack.redis_url)
    clock.reset()
    await stack.create_key()
    floor_url = stack.config.database_url("floor")
    if not is_sqlite(floor_url):
        await ensure_database(floor_url)

    scoring = Database(stack.database_urls["scoring"], pool_size=2)
    sequencer = Database(stack.database_urls["sequencer"], pool_size=2)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    stop_vacuum = asyncio.Event()
    vacuum = asyncio.create_task(stack.vacuum_while_running(stop_vacuum))
    try:
        async with DemoClient(stack.gateway_url, stack.api_key) as client:
            with Progress(*columns, console=console) as progress:
                ctx = RunContext(options.scale, stack, client, scoring, sequencer, report, progress)
                await _in_order(ctx, options)
    finally:
        stop_vacuum.set()
        await vacuum
        await scoring.dispose()
        await sequencer.dispose()


async def _learn_contact_ids(ctx: RunContext) -> None:
    """Read the imported contacts' ids from the sequencer's copy, for scenarios that enrol them by id."""
    async with ctx.sequencer.session() as session:
        rows = (await session.exec(select(ContactFact.email, ContactFact.contact_id))).all()  # type: ignore[call-overload]
    ctx.contact_ids_by_email.update({email: contact_id for email, contact_id in rows if email})


async def _in_order(ctx: RunContext, options: RunOptions) -> None:
    scale = ctx.scale
    await ctx.client.put("/v1/scoring/models/default", rule_set())
    template_id = await create_template(ctx)
    load = ctx.task(f"import {scale.contacts:,} contacts", 1)
    await import_contacts(ctx.client, scale.contacts)
    ctx.progress.update(load, completed=1)
    # The import leaves work for scoring and the sequencer, which copy each new contact's facts.
    # Ingest waits until that backlog is gone, so its figures do not include the import.
    backlog = Backlog(ctx.stack.redis_url, ctx.stack.config.namespace)
    try:
        await backlog.wait_until_idle()
    finally:
        await backlog.close()
    await ctx.stack.analyze()
    ctx.done("contacts imported")
    await _learn_contact_ids(ctx)

    ingest_rate = 0.0
    if options.runs("ingest"):
        ingest_rate = await run_ingest(ctx)
        ctx.done("ingest")
    if options.runs("rescore"):
        await run_rescore(ctx)
        ctx.done("rescore")
    send_rate = 0.0
    if options.runs("sending"):
        send_rate = await run_sending(ctx, template_id, 0, "sending", with_floor=True)
        ctx.done("sending")
    if options.runs("scheduling"):
        await run_scheduling(ctx, template_id, scale.send_contacts)
        ctx.done("scheduling")
    if options.runs("memory"):
        run_memory(ctx)
    if not options.scale_out or not options.runs("scale-out"):
        return

    ctx.stack.add_workers(2, spawn=True)
    await asyncio.sleep(WORKER_START_S)
    if ingest_rate:
        ingest_two = await throughput(ctx, "scaled", "ingest, 2 workers")
        ctx.done("ingest with 2 workers")
        ctx.report.add(Figure(
            "scale-out", "ingest speed-up, 2 workers per service", ingest_two / ingest_rate, "×",
            note=f"{ingest_two:,.0f} against {ingest_rate:,.0f} events/s with 1 worker; one API process per service",
        ))
    if send_rate:
        first = scale.send_contacts + scale.schedule_contacts
        send_two = await run_sending(ctx, template_id, first, "sending, 2 workers", with_floor=False)
        ctx.report.add(Figure(
            "scale-out", "sending speed-up, 2 workers per service", send_two / send_rate, "×",
            note=f"{send_two:,.0f} against {send_rate:,.0f} emails/s with 1 worker",
        ))
        ctx.done("sending with 2 workers")
