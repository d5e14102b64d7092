"""Rescore: every contact with history scored again after a change of the rule set, timed end to end."""

from __future__ import annotations

import asyncio
import time

from bench.context import RunContext
from bench.results import Figure, Target
from bench.workload import rule_set

POLL_S = 0.5


async def run_rescore(ctx: RunContext) -> None:
    """Change a rule's points, start the rescore and time it until the job is done."""
    await ctx.client.put("/v1/scoring/models/default", rule_set(pricing_points=12))
    started = time.perf_counter()
    job = await ctx.client.post("/v1/scoring/models/default/rescore")
    task = ctx.task("rescore: contacts", max(1, job["total"]))
    while job["state"] not in ("done", "failed", "superseded"):
        await asyncio.sleep(POLL_S)
        job = await ctx.client.get(f"/v1/scoring/jobs/{job['id']}")
        ctx.progress.update(task, total=max(1, job["total"]), completed=job["done"])
    elapsed = time.perf_counter() - started
    if job["state"] != "done":
        raise RuntimeError(f"rescore job {job['id']} ended {job['state']}: {job['error']}")

    ctx.report.add(Figure(
        "rescore", "wall time, request to job done", elapsed, "s",
        target=Target(60, False, "< 60 s for 100,000 contacts"),
        note=f"{job['total']:,} contacts with history",
    ))
