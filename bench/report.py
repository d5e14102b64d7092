"""The results as a rich table for the terminal and as a Markdown section of docs/benchmarks.md.

Each backend's results live between their own markers in the page, so a run replaces only its own
section and the hand-written text around it stays.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from rich.table import Table

from bench.results import Figure, Report

PAGE_HEADER = "# Benchmarks\n\nRun `make bench` (or `.venv/bin/python -m bench run`) to measure.\n"


def number(value: float | None) -> str:
    if value is None:
        return ""
    if math.isnan(value):
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def verdict(figure: Figure) -> str:
    return {True: "pass", False: "miss", None: ""}[figure.passed]


def ratio_text(figure: Figure) -> str:
    ratio = figure.ratio
    return "" if ratio is None else f"{ratio:.2f}"


def rich_table(report: Report) -> Table:
    table = Table(title=f"nurture benchmarks: {report.backend}, {report.scale} scale")
    for column in ("scenario", "figure", "value", "unit", "floor", "ratio", "target", "result"):
        table.add_column(column, justify="right" if column in ("value", "floor", "ratio") else "left")
    for figure in report.figures:
        style = {"pass": "green", "miss": "red"}.get(verdict(figure), "")
        table.add_row(
            figure.scenario, figure.name, number(figure.value), figure.unit, number(figure.floor),
            ratio_text(figure), figure.target_text, f"[{style}]{verdict(figure)}[/]" if style else "",
        )
    return table


def markdown_section(report: Report) -> str:
    """Return the run's section: how it was run, the machine, and one table row per figure."""
    lines = [f"### {report.backend} backend, {report.scale} scale", ""]
    lines += [
        f"Measured with `{report.command or f'.venv/bin/python -m bench run --backend {report.backend} --scale {report.scale}'}`.",
        "",
        "| machine | |",
        "| --- | --- |",
    ]
    lines += [f"| {name} | {value} |" for name, value in report.machine.items()]
    lines += [
        "",
        "| scenario | figure | value | unit | floor | ratio | target | result | how |",
        "| --- | --- | ---: | --- | ---: | ---: | --- | --- | --- |",
    ]
    for figure in report.figures:
        lines.append(
            f"| {figure.scenario} | {figure.name} | {number(figure.value)} | {figure.unit} | {number(figure.floor)} "
            f"| {ratio_text(figure)} | {figure.target_text} | {verdict(figure)} | {figure.note} |"
        )
    if report.notes:
        lines.append("")
        lines += [f"- {note}" for note in report.notes]
    return "\n".join(lines) + "\n"


def _markers(backend: str) -> tuple[str, str]:
    return f"<!-- bench:{backend}:begin -->", f"<!-- bench:{backend}:end -->"


def write_section(path: Path, report: Report) -> None:
    """Put the run's section between its backend's markers in `path`, appending them when missing."""
    begin, end = _markers(report.backend)
    block = f"{begin}\n{markdown_section(report)}{end}"
    page = path.read_text() if path.exists() else PAGE_HEADER
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(page):
        page = pattern.sub(lambda _: block, page)
    else:
        page = page.rstrip("\n") + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page)
