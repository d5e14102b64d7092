"""Running the demo from the command line, on its own platform or on one that is already running."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from dataclasses import dataclass, replace
from pathlib import Path

from rich.console import Console

from services.cli.demo.platform import Target, own_platform
from services.cli.demo.runner import Demo, DemoOptions, DemoResult


@dataclass(frozen=True)
class RunningPlatform:
    """How to reach a platform the demo did not start; it must read the same NURTURE_CLOCK_FILE."""

    gateway_url: str
    api_key: str
    mail_dir: Path
    redis_url: str
    namespace: str


def run_demo(options: DemoOptions, *, data_dir: Path, running: RunningPlatform | None, console: Console) -> DemoResult:
    """Run the demo, starting (and finally stopping) a platform in `data_dir` unless one is given.

    SIGTERM stops it like Ctrl-C, so the platform it started stops too.
    """
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    started = time.monotonic()
    if running is not None:
        target = Target(running.gateway_url, running.api_key, running.mail_dir, running.redis_url, running.namespace)
        if sweep_ms := os.environ.get("NURTURE_SWEEP_INTERVAL_MS"):
            target = replace(target, sweep_interval_s=int(sweep_ms) / 1000)
        result = asyncio.run(Demo(target, options, console).run())
    else:
        with own_platform(data_dir, console) as target:
            console.print(f"platform ready: gateway {target.gateway_url}, data in {data_dir}")
            result = asyncio.run(Demo(target, options, console).run())

    phases = ", ".join(f"{phase} {seconds:.0f} s" for phase, seconds in result.timings.items())
    console.print(f"demo finished in {time.monotonic() - started:.0f} s ({phases})")
    return result
