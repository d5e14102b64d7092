"""Memory: the resident set of every service and worker process, read from /proc (Linux only)."""

from __future__ import annotations

from pathlib import Path

from bench.context import RunContext
from bench.results import Figure, Target

INFRASTRUCTURE = {"redis", "smtp-sink"}


def resident_mb(pid: int) -> tuple[float, float]:
    """Return the current and the peak resident set size of a process in MB (VmRSS, VmHWM)."""
    fields: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) * 1024 / 1_000_000
    return fields["VmRSS"], fields["VmHWM"]


def run_memory(ctx: RunContext) -> None:
    """Add each process's peak resident memory so far, with the current value in the note."""
    for name, pid in sorted(ctx.stack.processes().items()):
        if name in INFRASTRUCTURE:
            continue
        current, peak = resident_mb(pid)
        ctx.report.add(Figure(
            "memory", f"{name} peak RSS", peak, "MB", target=Target(200, False, "< 200 MB"),
            note=f"now {current:.0f} MB, with {ctx.scale.contacts:,} contacts loaded",
        ))
