"""Ingest: events posted to the gateway's batch endpoint until each is on the timeline and scored.

Throughput posts one page view per contact, `IN_FLIGHT` batches at a time, and ends when the last
event's ledger row is written. The lag run offers a steady rate in small batches every 100 ms and
takes, per event, the time from the gateway's 202 to its ledger row. The bare floor pushes the same
events through the least work the path needs (see bench/floor.py), in the same run.

During the throughput run the CPU time of every service and worker process is read from /proc, so
the report shows which process an event costs most, in milliseconds of CPU per event.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.context import RunContext
from bench.cpu import cpu_ms_per_item, service_cpu
from bench.floor import ingest_floor
from bench.results import Figure, Target, percentile
from bench.workload import batches, page_views, post_batch, scored_count, scored_times
from services.kit import clock

# Batches in flight at once: the contacts service stores each batch in one transaction, so more
# only queue up behind each other (the demo loads its history the same way).
IN_FLIGHT = 2
LAG_TICK_S = 0.1


async def post_all(ctx: RunContext, parts: list[list[dict[str, Any]]], accepted: dict[str, datetime]) -> None:
    """Post the batches, IN_FLIGHT at a time, recording when each event was accepted and its contact id."""
    queue: asyncio.Queue[list[dict[str, Any]]] = asyncio.Queue()
    for part in parts:
        queue.put_nowait(part)

    async def sender() -> None:
        while not queue.empty():
            part = queue.get_nowait()
            results = await post_batch(ctx.client, part)
            now = datetime.now(UTC)
            for event in part:
                accepted[event["id"]] = now
            for item in results:
                ctx.contact_ids_by_email[part[item["index"]]["email"]] = item["contact_id"]

    await asyncio.gather(*(sender() for _ in range(IN_FLIGHT)))


async def throughput(ctx: RunContext, prefix: str, label: str, cpu_ms: dict[str, float] | None = None) -> float:
    """Post `ingest_events` events and return events per second, from the first post to the last score.

    With `cpu_ms`, fill it with each process's CPU time per event in milliseconds.
    """
    contacts = [index % ctx.scale.contacts for index in range(ctx.scale.ingest_events)]
    events = page_views(prefix, contacts)
    task = ctx.task(f"{label}: events scored", len(events))
    accepted: dict[str, datetime] = {}
    cpu_before = service_cpu(ctx)
    started = datetime.now(UTC)
    await post_all(ctx, batches(events, ctx.scale.batch_size), accepted)
    await ctx.wait_for(lambda: scored_count(ctx.scoring, prefix), len(events), task, what=label)

    if cpu_ms is not None:
        cpu_ms.update(cpu_ms_per_item(cpu_before, service_cpu(ctx), len(events)))
    last = max((await scored_times(ctx.scoring, prefix)).values())
    elapsed = (last - clock.offset() - started).total_seconds()
    return len(events) / elapsed


async def floor_throughput(ctx: RunContext) -> float:
    """Return the bare floor's events per second for the same events and batches."""
    contacts = [index % ctx.scale.contacts for index in range(ctx.scale.ingest_events)]
    events = page_views("floor", contacts)
    task = ctx.task("ingest floor: bare insert, queue and score", 1)
    queue = f"{ctx.stack.config.namespace}:floor:queue"
    elapsed = await ingest_floor(ctx.stack.config.database_url("floor"), ctx.stack.redis_url, queue, batches(events, ctx.scale.batch_size))
    ctx.progress.update(task, completed=1)
    return len(events) / elapsed


async def steady_lag(ctx: RunContext) -> tuple[list[float], float]:
    """Offer `lag_rate` events a second for `lag_seconds`; return each event's lag in ms and the rate offered."""
    rate, seconds = ctx.scale.lag_rate, ctx.scale.lag_seconds
    per_tick = max(1, round(rate * LAG_TICK_S))
    total = int(rate * seconds)
    events = page_views("lag", [index % ctx.scale.contacts for index in range(total)])
    parts = batches(events, per_tick)
    task = ctx.task(f"score lag at {rate} events/s: events scored", total)
    accepted: dict[str, datetime] = {}

    async def post(part: list[dict[str, Any]]) -> None:
        await post_batch(ctx.client, part)
        now = datetime.now(UTC)
        for event in part:
            accepted[event["id"]] = now

    # Each tick starts on schedule whether or not the earlier posts have returned, so a slow
    # platform gets the offered rate and not the rate it can keep up with.
    started = time.perf_counter()
    posts = []
    for tick, part in enumerate(parts):
        delay = started + tick * per_tick / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        posts.append(asyncio.create_task(post(part)))
    await asyncio.gather(*posts)
    offered = total / (time.perf_counter() - started)

    await ctx.wait_for(lambda: scored_count(ctx.scoring, "lag"), total, task, what="score lag")
    scored = await scored_times(ctx.scoring, "lag")
    offset = clock.offset()
    lags = [(scored[event_id] - offset - at) / timedelta(milliseconds=1) for event_id, at in accepted.items()]
    return lags, offered


async def run_ingest(ctx: RunContext) -> float:
    """Measure the floor, the platform's throughput and its lag; add the figures and return the throughput."""
    floor = await floor_throughput(ctx)
    cpu_ms: dict[str, float] = {}
    rate = await throughput(ctx, "ingest", "ingest", cpu_ms)
    ctx.report.add(Figure(
        "ingest", "throughput, accepted to scored", rate, "events/s", floor=floor,
        target=Target(2000, True, "≥ 2,000 events/s"), ratio_target=Target(0.25, True, "≥ ¼ of the floor"),
        note=f"{ctx.scale.ingest_events:,} events in batches of {ctx.scale.batch_size}, {IN_FLIGHT} in flight",
    ))
    for name, value in sorted(cpu_ms.items(), key=lambda item: -item[1]):
        ctx.report.add(Figure(
            "ingest", f"{name} CPU per event", value, "ms",
            note="CPU time of the process during the throughput run, divided by the events",
        ))

    lags, offered = await steady_lag(ctx)
    note = f"{len(lags):,} events offered at {offered:,.0f} events/s (asked {ctx.scale.lag_rate})"
    for share, name in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
        target = Target(250, False, "< 250 ms at 500 events/s") if name == "p95" else None
        ctx.report.add(Figure("ingest", f"score lag {name}", percentile(lags, share), "ms", target=target, note=note))
    return rate
