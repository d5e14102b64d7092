"""Measure how many evaluations a second the scoring rules library runs in one process.

Run from the repository root: `.venv/bin/python -m tests.scoring.rules.benchmark_matching`.
It uses the reference rule set of the tests (6 fit, 7 engagement and 1 pattern rule).
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from datetime import timedelta

from services.scoring.rules import LedgerTotals, award, compute_score, load_rule_set, match_event, match_fit
from tests.scoring.rules.builders import START, contact, event, reference_document

ROUNDS = 5000


def rate(function: Callable[[], object], rounds: int = ROUNDS) -> float:
    function()
    started = time.perf_counter()
    for _ in range(rounds):
        function()
    return rounds / (time.perf_counter() - started)


def main() -> None:
    compiled = load_rule_set(reference_document())
    person = contact()
    visit = event("p1", "page_view", days=5, url="https://acme.example/pricing")
    recent = [
        event(f"r{index}", "email_clicked" if index % 2 else "page_view", days=index * 0.5, url="/pricing")
        for index in range(10)
    ]
    matches = match_event(compiled, contact=person, event=visit, recent_events=recent)
    ledger = award(compiled.rule_set, matches)
    now = START + timedelta(days=30)

    measurements = {
        "match_fit": lambda: match_fit(compiled, contact=person),
        "match_event, no recent events": lambda: match_event(compiled, contact=person, event=visit),
        "match_event, 10 recent events": lambda: match_event(
            compiled, contact=person, event=visit, recent_events=recent
        ),
        "award": lambda: award(compiled.rule_set, matches, totals=LedgerTotals()),
        "compute_score": lambda: compute_score(compiled.rule_set, ledger, now=now),
    }

    print(f"Python {platform.python_version()} on {platform.machine()}")
    for label, function in measurements.items():
        print(f"{label:32} {rate(function):>10,.0f} per second")
    compiled.close()


if __name__ == "__main__":
    main()
