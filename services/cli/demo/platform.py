"""The platform the demo runs on: one it starts in its own data folder, or one already running.

The demo's own platform listens on free loopback ports, so it runs beside `nurture up`, and keeps a
clock file in its data folder, through which the demo moves the time of every process at once.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from services.cli.demo.errors import DemoError
from services.cli.dev import prepare
from services.cli.services import load_settings
from services.cli.supervisor import Platform, PlatformConfig, free_port
from services.gateway.keys.service import create_key
from services.kit.db import Database
from services.kit.settings import SERVICE_NAMES, ServiceSettings

# Written into a data folder the demo created, so a later run may wipe it and nothing else.
MARKER_FILE = ".nurture-demo"
CLOCK_FILE = "clock.json"
READY_TIMEOUT_S = 90.0
# Shorter than the platform default of 500 ms, so each simulated step of the clock settles sooner.
SWEEP_INTERVAL_MS = "100"


@dataclass(frozen=True)
class Target:
    """A running platform: its gateway, a key with every scope, the SMTP sink's folder and the queues."""

    gateway_url: str
    api_key: str
    mail_dir: Path
    redis_url: str
    namespace: str
    # How often the platform's workers sweep for due steps; a step of the demo's clock waits longer.
    sweep_interval_s: float = ServiceSettings.model_fields["sweep_interval_ms"].default / 1000


class DemoSetupError(DemoError):
    """The demo's platform cannot be prepared (data folder, ports or processes)."""


def reset_data_dir(data_dir: Path) -> None:
    """Empty a data folder of an earlier demo run, or create it; refuse a folder the demo did not make."""
    if data_dir.exists() and any(data_dir.iterdir()):
        if not (data_dir / MARKER_FILE).exists():
            raise DemoSetupError(
                f"{data_dir} is not empty and was not created by `nurture demo`; pass an empty or new --data-dir"
            )
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / MARKER_FILE).write_text("created by `nurture demo`; the next demo run empties this folder\n")


def _config(data_dir: Path) -> PlatformConfig:
    ports = {service: free_port() for service in SERVICE_NAMES}
    extra_env = {
        "NURTURE_CLOCK_FILE": str((data_dir / CLOCK_FILE).resolve()),
        "NURTURE_PUBLIC_BASE_URL": f"http://127.0.0.1:{ports['gateway']}",
        "NURTURE_SWEEP_INTERVAL_MS": os.environ.get("NURTURE_SWEEP_INTERVAL_MS", SWEEP_INTERVAL_MS),
    }
    return PlatformConfig(
        data_dir=data_dir,
        redis_url=os.environ.get("REDIS_URL") or None,
        redis_port=free_port(),
        smtp_port=free_port(),
        ports=ports,
        extra_env=extra_env,
    )


async def create_demo_key() -> str:
    """Create an API key with every scope and no rate limit, directly in the gateway's database."""
    database = Database(load_settings("gateway").database_url)
    try:
        async with database.session() as session:
            _, key = await create_key(session, name="demo", scopes=["*"], rate_limit=0)
        return key
    finally:
        await database.dispose()


@contextmanager
def own_platform(data_dir: Path, console: Console) -> Iterator[Target]:
    """Start every service and worker on embedded defaults in `data_dir`; stop them all on exit."""
    reset_data_dir(data_dir)
    config = _config(data_dir)
    # This process migrates the databases, creates the key and moves the clock, so it needs the
    # same settings as the children.
    os.environ.update(config.environment())

    prepare(data_dir, console)
    key = asyncio.run(create_demo_key())
    platform = Platform(config, report=lambda line: console.print(f"[yellow]{line}[/]"))
    try:
        platform.start()
        platform.wait_ready(timeout_s=READY_TIMEOUT_S)
        platform.supervise_in_background()
        yield Target(
            gateway_url=f"http://127.0.0.1:{config.ports['gateway']}",
            api_key=key,
            mail_dir=data_dir / "mail",
            redis_url=config.environment()["REDIS_URL"],
            namespace=os.environ.get("NURTURE_NAMESPACE", "nurture"),
            sweep_interval_s=int(config.extra_env["NURTURE_SWEEP_INTERVAL_MS"]) / 1000,
        )
    finally:
        console.print("stopping the platform...")
        platform.stop()
        console.print("[green]platform stopped[/]")
