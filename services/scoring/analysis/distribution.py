"""Summaries of a list of scores: quantiles and an equal-width histogram."""

import math
from collections.abc import Sequence

from services.scoring.schemas import Distribution, HistogramBin

QUANTILES = {"p10": 0.10, "p25": 0.25, "p50": 0.50, "p75": 0.75, "p90": 0.90, "p99": 0.99}
HISTOGRAM_BINS = 10


def quantile(ordered: Sequence[float], q: float) -> float:
    """Return the q-quantile of sorted values by linear interpolation between closest ranks.

    This is the default method of NumPy and R (type 7): position q * (n - 1) in the sorted list.
    """
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    fraction = position - low
    return round(ordered[low] + (ordered[high] - ordered[low]) * fraction, 2)


def histogram(ordered: Sequence[float], bins: int = HISTOGRAM_BINS) -> list[HistogramBin]:
    """Count sorted values into `bins` equal-width bins from the minimum to the maximum.

    Each bin includes its low edge; the last also includes the maximum. All values equal give one bin.
    """
    if not ordered:
        return []
    low, high = ordered[0], ordered[-1]
    if low == high:
        return [HistogramBin(low=low, high=high, count=len(ordered))]

    width = (high - low) / bins
    counts = [0] * bins
    for value in ordered:
        counts[min(bins - 1, int((value - low) / width))] += 1
    return [
        HistogramBin(low=round(low + index * width, 2), high=round(low + (index + 1) * width, 2), count=number)
        for index, number in enumerate(counts)
    ]


def describe(scores: Sequence[float]) -> Distribution:
    ordered = sorted(scores)
    if not ordered:
        return Distribution(count=0, min=None, max=None, mean=None, quantiles={}, histogram=[])
    return Distribution(
        count=len(ordered),
        min=ordered[0],
        max=ordered[-1],
        mean=round(math.fsum(ordered) / len(ordered), 2),
        quantiles={name: quantile(ordered, q) for name, q in QUANTILES.items()},
        histogram=histogram(ordered),
    )
