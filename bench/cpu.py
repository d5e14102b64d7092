"""CPU time of the platform's processes, read from /proc, to show which process an event or email costs most."""

import os
from pathlib import Path

from bench.context import RunContext
from bench.memory import INFRASTRUCTURE


def cpu_seconds(pid: int) -> float:
    """Return the CPU time a process has used so far, user and system, in seconds (Linux only)."""
    # The command name may hold spaces, so the split starts after its closing parenthesis.
    # utime and stime are the 14th and 15th fields of the whole line.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def service_cpu(ctx: RunContext) -> dict[str, float]:
    """Return the CPU seconds used so far by each service and worker process, by name."""
    return {name: cpu_seconds(pid) for name, pid in ctx.stack.processes().items() if name not in INFRASTRUCTURE}


def cpu_ms_per_item(before: dict[str, float], after: dict[str, float], items: int) -> dict[str, float]:
    """Return each process's CPU time between two readings, in milliseconds per item."""
    return {name: 1000 * (after[name] - used) / items for name, used in before.items() if name in after}
