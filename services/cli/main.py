"""The `nurture` command line: run the platform, one service or worker, migrations, keys and the clock."""

import asyncio
import signal
import time
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from services.cli import services as registry
from services.cli.demo.dataset import DEFAULT_CONTACTS
from services.kit import clock
from services.kit.heap import freeze_startup_objects
from services.kit.logging import configure_logging
from services.kit.migrations import ensure_database, upgrade
from services.kit.settings import SERVICE_NAMES

app = typer.Typer(help="nurture: lead nurturing, scoring and drip sequences.", no_args_is_help=True)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
clock_app = typer.Typer(help="Read or move the platform clock (needs NURTURE_CLOCK_FILE).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(clock_app, name="clock")

console = Console(stderr=True)

ServiceArgument = Annotated[str, typer.Argument(help=f"One of: {', '.join(SERVICE_NAMES)}")]


def _check(service: str) -> str:
    try:
        return registry.check_service(service)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error


@app.command()
def serve(service: ServiceArgument) -> None:
    """Run one service's HTTP API (host and port from <SERVICE>_HOST and <SERVICE>_PORT)."""
    import uvicorn

    from services.kit.app import keep_connection_on_error

    settings = registry.load_settings(_check(service))
    configure_logging(service=service, log_format=settings.log_format, level=settings.log_level)
    service_app = registry.create_app(service)
    freeze_startup_objects()
    uvicorn.run(
        keep_connection_on_error(service_app), host=settings.host, port=settings.port, log_config=None,
        timeout_graceful_shutdown=5,
    )


@app.command()
def worker(service: ServiceArgument) -> None:
    """Run one service's queue worker."""
    from services.kit.worker import run_worker

    settings = registry.load_settings(_check(service))
    configure_logging(service=f"{service}-worker", log_format=settings.log_format, level=settings.log_level)
    worker_settings = registry.worker_settings(service)
    freeze_startup_objects()
    run_worker(worker_settings)


@app.command()
def migrate(
    services: Annotated[list[str] | None, typer.Argument(help="Services to migrate; all when omitted")] = None,
) -> None:
    """Create each service's database if missing and apply its migrations."""
    for service in services or list(SERVICE_NAMES):
        settings = registry.load_settings(_check(service))
        asyncio.run(ensure_database(settings.database_url))
        upgrade(service, settings.database_url)
        console.print(f"[green]migrated[/] {service}")


@app.command()
def sink(
    port: Annotated[int, typer.Option(help="TCP port to listen on")] = 8025,
    folder: Annotated[Path | None, typer.Option(help="Where messages are kept; <data dir>/mail by default")] = None,
) -> None:
    """Run the local SMTP sink that keeps every message as a file."""
    from services.kit.smtp_sink import start_sink

    settings = registry.load_settings("sequencer")
    configure_logging(service="smtp-sink", log_format=settings.log_format, level=settings.log_level)
    target = folder or settings.data_dir / "mail"
    controller = start_sink(target, port=port)
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    while not stop:
        time.sleep(0.2)
    controller.stop()


@app.command()
def up(
    data_dir: Annotated[Path, typer.Option(envvar="NURTURE_DATA_DIR", help="Folder for databases, mail and logs")] = Path("data"),
) -> None:
    """Start all four services and their workers on embedded defaults, and keep them running."""
    from services.cli.dev import run_platform

    run_platform(data_dir, console)


@app.command()
def demo(
    contacts: Annotated[int, typer.Option(help="Leads to take from the Bank Marketing dataset, spread evenly over its rows (45,211 for all of them)")] = DEFAULT_CONTACTS,
    weeks: Annotated[int, typer.Option(help="Simulated weeks of nurturing after the import")] = 4,
    data_dir: Annotated[Path, typer.Option(help="Folder of the demo's own platform; emptied at the start of each run")] = Path("data/demo"),
    gateway: Annotated[str | None, typer.Option(help="URL of a running platform's gateway; the demo then starts none")] = None,
    api_key: Annotated[str | None, typer.Option(envvar="NURTURE_API_KEY", help="API key with every scope (with --gateway)")] = None,
    mail_dir: Annotated[Path | None, typer.Option(help="Folder of the running platform's SMTP sink (with --gateway)")] = None,
    redis_url: Annotated[str | None, typer.Option(envvar="REDIS_URL", help="Redis of the running platform (with --gateway)")] = None,
    model: Annotated[str, typer.Option(help="Score model that gets the demo's rule set")] = "default",
    seed: Annotated[int, typer.Option(help="Seed of the simulated recipients and sales team")] = 2012,
) -> None:
    """Nurture real leads of the UCI Bank Marketing dataset (a sample of 500 by default) and print the nurturing summary."""
    from services.cli.demo.command import RunningPlatform, run_demo
    from services.cli.demo.errors import DemoError
    from services.cli.demo.runner import DemoOptions

    running = None
    if gateway is not None:
        if api_key is None or mail_dir is None or redis_url is None:
            raise typer.BadParameter("--gateway needs --api-key, --mail-dir and --redis-url too", param_hint="--gateway")
        namespace = registry.load_settings("gateway").namespace
        running = RunningPlatform(gateway, api_key, mail_dir, redis_url, namespace)

    configure_logging(service="demo", log_format="console", level="WARNING")
    try:
        run_demo(DemoOptions(contacts=contacts, weeks=weeks, model=model, seed=seed), data_dir=data_dir, running=running, console=console)
    except DemoError as error:
        console.print(f"[red]demo failed: {error}[/]")
        raise typer.Exit(1) from error
    except KeyboardInterrupt:
        console.print("[yellow]demo interrupted[/]")
        raise typer.Exit(130) from None


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="A label for the key, e.g. the team or app using it")],
    scopes: Annotated[list[str], typer.Option("--scopes", help="Scope such as contacts:read; repeat the option, or * for all")],
) -> None:
    """Create an API key; it is printed once and only its hash is stored."""
    from services.cli.keys import create
    from services.gateway.keys.scopes import validate_scopes

    try:
        validate_scopes(scopes)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--scopes") from error
    key_id, key = asyncio.run(create(name, scopes))
    console.print(f"created key {key_id} ({name}); store it now, it is not shown again:")
    typer.echo(key)


@keys_app.command("list")
def keys_list() -> None:
    """List API keys (never the keys themselves)."""
    from services.cli.keys import show

    asyncio.run(show(console))


@keys_app.command("revoke")
def keys_revoke(key: Annotated[str, typer.Argument(help="The key's id or its prefix")]) -> None:
    """Revoke an API key at once."""
    from services.cli.keys import revoke

    if not asyncio.run(revoke(key)):
        console.print(f"[red]no key with id or prefix {key}[/]")
        raise typer.Exit(1)
    console.print(f"revoked {key}")


@clock_app.command("show")
def clock_show() -> None:
    """Print the platform time."""
    typer.echo(clock.now().isoformat())


@clock_app.command("advance")
def clock_advance(
    days: Annotated[float, typer.Option(help="Days to move forward")] = 0,
    hours: Annotated[float, typer.Option(help="Hours to move forward")] = 0,
) -> None:
    """Move the platform clock forward for every process."""
    typer.echo(clock.advance(timedelta(days=days, hours=hours)).isoformat())
