"""`nurture up`: the platform on embedded defaults, for a first look and for development."""

import asyncio
import os
import signal
import time
from pathlib import Path

from rich.console import Console

from services.cli.keys import create, is_valid
from services.cli.services import load_settings
from services.cli.supervisor import Platform, PlatformConfig
from services.kit.migrations import ensure_database, upgrade
from services.kit.settings import DEFAULT_PORTS, SERVICE_NAMES

DEV_KEY_FILE = "dev-api-key"


def prepare(data_dir: Path, console: Console) -> str:
    """Migrate every service's database and return a development API key with every scope."""
    for service in SERVICE_NAMES:
        url = load_settings(service).database_url
        asyncio.run(ensure_database(url))
        upgrade(service, url)
    console.print("[green]databases migrated[/]")

    key_file = data_dir / DEV_KEY_FILE
    if key_file.exists():
        key = key_file.read_text().strip()
        if asyncio.run(is_valid(key)):
            return key
    _, key = asyncio.run(create("development", ["*"]))
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    return key


def _ports() -> dict[str, int]:
    return {service: int(os.environ.get(f"{service.upper()}_PORT", port)) for service, port in DEFAULT_PORTS.items()}


def run_platform(data_dir: Path, console: Console) -> None:
    """Start everything, print where it listens, restart what dies, and stop cleanly on Ctrl-C."""
    data_dir.mkdir(parents=True, exist_ok=True)
    os.environ["NURTURE_DATA_DIR"] = str(data_dir.resolve())
    redis_url = os.environ.get("REDIS_URL") or None
    config = PlatformConfig(
        data_dir=data_dir,
        redis_url=redis_url,
        ports=_ports(),
        redis_port=int(os.environ.get("NURTURE_EMBEDDED_REDIS_PORT", "6390")),
        smtp_port=int(os.environ.get("NURTURE_SMTP_SINK_PORT", "8025")),
    )
    for key, value in config.environment().items():
        os.environ.setdefault(key, value)

    key = prepare(data_dir, console)
    platform = Platform(config, report=lambda line: console.print(f"[yellow]{line}[/]"))
    started = time.monotonic()
    stop_requested = False

    def _request_stop(*_: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, _request_stop)
    signal.signal(signal.SIGINT, _request_stop)
    try:
        platform.start()
        platform.wait_ready(timeout_s=60)
        console.print(f"[green]ready in {time.monotonic() - started:.1f} s[/]")
        console.print(f"gateway:  http://127.0.0.1:{config.ports['gateway']}  (API docs at /docs)")
        console.print(f"API key:  {key}")
        console.print(f"redis:    {config.environment()['REDIS_URL']}" + ("" if redis_url else " (embedded)"))
        console.print(f"mail:     {data_dir / 'mail'} (local SMTP sink on port {config.smtp_port})")
        console.print(f"logs:     {data_dir / 'logs'}")
        console.print("Press Ctrl-C to stop.")
        while not stop_requested:
            platform.supervise_once()
            time.sleep(0.5)
    finally:
        console.print("stopping...")
        platform.stop()
        console.print("[green]stopped[/]")
