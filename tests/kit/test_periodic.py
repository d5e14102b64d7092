"""Periodic tasks of a worker start an interval apart, counted from the start of each run."""

import pytest

from services.kit.worker import pause_after_run


@pytest.mark.parametrize(
    ("ran_s", "expected_pause_s"),
    [
        (0.0, 0.5),  # an idle run waits the whole interval
        (0.1, 0.4),
        (0.4, 0.1),  # a sweep that sent for most of the interval looks again on time
        (0.48, 0.05),  # a tenth of the interval is always left
        (2.0, 0.05),
    ],
)
def test_pause_counts_from_run_start(ran_s: float, expected_pause_s: float) -> None:
    assert pause_after_run(0.5, ran_s) == pytest.approx(expected_pause_s)
