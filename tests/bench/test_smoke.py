"""The benchmark command at tiny sizes: every scenario runs and lands in the table and the results page.

It checks that the benchmark works, never how fast the platform is: timings belong to bench/.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ("ingest", "rescore", "sending", "scheduling", "memory", "scale-out")
PROCESSES = ("contacts", "scoring", "sequencer", "gateway")


def _clean_environment() -> dict[str, str]:
    """Return this process's environment without the test session's platform settings.

    The benchmark starts its own platform, which must not pick up the session's namespace,
    databases, clock file or sweep interval.
    """
    names = {"REDIS_URL", *(f"{service.upper()}_{suffix}" for service in PROCESSES for suffix in ("DATABASE_URL", "URL", "PORT"))}
    return {name: value for name, value in os.environ.items() if not name.startswith("NURTURE_") and name not in names}


def _rows(page: str) -> list[list[str]]:
    rows = [line.strip("|").split("|") for line in page.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row] for row in rows]


def test_tiny_run_reports_every_scenario(tmp_path: Path) -> None:
    output = tmp_path / "benchmarks.md"
    output.write_text("# Benchmarks\n\nHand-written notes stay.\n")

    completed = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--backend", "embedded", "--scale", "tiny",
         "--output", str(output), "--data-dir", str(tmp_path / "data")],
        cwd=ROOT, env=_clean_environment(), capture_output=True, text=True, timeout=240,
    )

    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert "nurture benchmarks: embedded, tiny scale" in completed.stdout
    page = output.read_text()
    assert "Hand-written notes stay." in page
    assert "<!-- bench:embedded:begin -->" in page
    assert "<!-- bench:embedded:end -->" in page
    figures = {(row[0], row[1]): row for row in _rows(page) if row[0] in SCENARIOS}
    for scenario in SCENARIOS:
        assert any(key[0] == scenario for key in figures), f"no figure for {scenario}"
    for process in PROCESSES:
        assert ("memory", f"{process} peak RSS") in figures
        assert ("memory", f"{process}-worker peak RSS") in figures
        assert ("ingest", f"{process}-worker CPU per event") in figures
        assert ("sending", f"{process}-worker CPU per email") in figures
    for key in (("ingest", "throughput, accepted to scored"), ("sending", "emails sent, due to accepted by the sink")):
        value, floor, ratio = figures[key][2], figures[key][4], figures[key][5]
        assert re.fullmatch(r"[\d,.]+", value), f"{key}: value {value!r}"
        assert re.fullmatch(r"[\d,.]+", floor), f"{key}: floor {floor!r}"
        assert re.fullmatch(r"[\d.]+", ratio), f"{key}: ratio {ratio!r}"
    assert not any("n/a" in row for row in figures.values()), "a figure has no value"
