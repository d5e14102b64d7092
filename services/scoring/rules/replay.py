"""Scoring a contact's whole history from scratch, for simulations and rescoring."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.scoring.rules.compiler import CompiledRuleSet
from services.scoring.rules.facts import EventRecord, parse_event, parse_time
from services.scoring.rules.matching import match_event, match_fit
from services.scoring.rules.scorer import (
    LedgerEntry,
    LedgerTotals,
    ScoreBreakdown,
    award,
    compute_score,
    fit_changes,
)


@dataclass(frozen=True, slots=True)
class Replay:
    entries: tuple[LedgerEntry, ...]
    score: ScoreBreakdown


def replay(
    compiled: CompiledRuleSet,
    *,
    contact: Mapping[str, Any],
    events: Sequence[Mapping[str, Any]],
    now: datetime,
) -> Replay:
    """Build a contact's ledger from its events as if they arrived in time order, and score it.

    Events are ordered by `occurred_at`, then id, and a repeated id counts once, so the result
    does not depend on the order of `events`. Fit rows are dated `now`, because the contact
    document describes the contact as it is now.
    """
    moment = parse_time(now, "now")
    ordered = _ordered_events(events)
    times = [record.occurred_at for record, _raw in ordered]
    window = compiled.history_window

    totals = LedgerTotals()
    entries: list[LedgerEntry] = []
    for position, (record, raw) in enumerate(ordered):
        # Only earlier events, as when the events arrive live in time order.
        start = bisect_left(times, record.occurred_at - window)
        earlier = [other for _record, other in ordered[start:position]]
        matches = match_event(compiled, contact=contact, event=raw, recent_events=earlier)
        new_entries = award(compiled.rule_set, matches, totals=totals)
        totals = totals.plus(compiled.rule_set, new_entries)
        entries.extend(new_entries)

    fit_matches = match_fit(compiled, contact=contact)
    entries.extend(fit_changes(compiled.rule_set, fit_matches, current={}, at=moment))
    score = compute_score(compiled.rule_set, entries, now=moment)
    return Replay(entries=tuple(entries), score=score)


def _ordered_events(
    events: Sequence[Mapping[str, Any]],
) -> list[tuple[EventRecord, Mapping[str, Any]]]:
    parsed = [(parse_event(raw, f"events[{index}]"), raw) for index, raw in enumerate(events)]
    parsed.sort(key=lambda pair: (pair[0].occurred_at, pair[0].id))
    unique = []
    seen: set[str] = set()
    for record, raw in parsed:
        if record.id not in seen:
            seen.add(record.id)
            unique.append((record, raw))
    return unique
