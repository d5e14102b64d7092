"""Measured figures, their floors and targets, and the percentiles they are built from."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field


def percentile(values: Sequence[float], share: float) -> float:
    """Return the `share` (0 to 1) percentile by the nearest-rank method; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Target:
    """A target a figure must meet: `at_least` or `at_most` the bound, in the figure's unit."""

    bound: float
    at_least: bool
    text: str

    def met_by(self, value: float) -> bool:
        if math.isnan(value):
            return False
        return value >= self.bound if self.at_least else value <= self.bound


@dataclass
class Figure:
    """One measured number of a scenario, with its bare floor and target when it has them."""

    scenario: str
    name: str
    value: float
    unit: str
    floor: float | None = None
    target: Target | None = None
    # A target on the ratio value/floor rather than on the value itself.
    ratio_target: Target | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.floor is None or self.floor == 0:
            return None
        return self.value / self.floor

    @property
    def passed(self) -> bool | None:
        checks: list[bool] = []
        if self.target is not None:
            checks.append(self.target.met_by(self.value))
        if self.ratio_target is not None:
            ratio = self.ratio
            checks.append(ratio is not None and self.ratio_target.met_by(ratio))
        return all(checks) if checks else None

    @property
    def target_text(self) -> str:
        texts = [target.text for target in (self.target, self.ratio_target) if target is not None]
        return "; ".join(texts)


@dataclass
class Report:
    """Every figure of one run, in the order measured, and how the run was set up."""

    backend: str
    scale: str
    figures: list[Figure] = field(default_factory=list)
    machine: dict[str, str] = field(default_factory=dict)
    # The command line that produced the report, as printed on the results page.
    command: str = ""
    notes: list[str] = field(default_factory=list)

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        return figure

    def scenarios(self) -> list[str]:
        return list(dict.fromkeys(figure.scenario for figure in self.figures))
