"""The platform clock moves for every process that reads the clock file."""

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from services.kit import clock


def _now_in_child_process() -> datetime:
    output = subprocess.run(
        [sys.executable, "-c", "from services.kit import clock; print(clock.now().isoformat())"],
        check=True, capture_output=True, text=True, env=os.environ.copy(),
    ).stdout
    return datetime.fromisoformat(output.strip())


def test_advance_is_seen_by_another_process() -> None:
    before = datetime.now(UTC)

    clock.advance(timedelta(days=3))

    seen = _now_in_child_process()
    assert seen - before >= timedelta(days=3)
    assert seen - before < timedelta(days=3, minutes=1)


def test_freeze_stops_time_everywhere() -> None:
    instant = datetime(2024, 6, 4, 8, 0, tzinfo=UTC)

    clock.freeze(instant)

    assert clock.now() == instant
    assert _now_in_child_process() == instant
    clock.advance(timedelta(hours=1))
    assert clock.now() == instant + timedelta(hours=1)


def test_wall_clock_translation_subtracts_offset() -> None:
    clock.advance(timedelta(days=1))
    due = clock.now() + timedelta(minutes=5)

    wall = clock.to_wall_clock(due)

    assert abs((wall - datetime.now(UTC)) - timedelta(minutes=5)) < timedelta(seconds=5)


def test_naive_datetime_is_rejected() -> None:
    with pytest.raises(ValueError, match="aware"):
        clock.freeze(datetime(2024, 1, 1))


def test_moving_needs_clock_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NURTURE_CLOCK_FILE")

    with pytest.raises(RuntimeError, match="NURTURE_CLOCK_FILE"):
        clock.advance(timedelta(days=1))
    assert abs(clock.now() - datetime.now(UTC)) < timedelta(seconds=1)
