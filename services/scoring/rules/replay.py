"""Scoring a contact's whole history from scratch, for simulations and rescoring."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.scoring.rules.compiler import CompiledRuleSet
from services.scoring.rules.errors import ScoringInputError
from services.scoring.rules.facts import EventRecord, parse_event, parse_time
from services.scoring.rules.matching import (
    RuleMatch,
    events_match_alone,
    match_event,
    match_events_alone,
    match_fit,
    match_fit_many,
)
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

    def event_matches(position: int) -> list[RuleMatch]:
        # Only earlier events, as when the events arrive live in time order.
        record, raw = ordered[position]
        start = bisect_left(times, record.occurred_at - window)
        earlier = [other for _record, other in ordered[start:position]]
        return match_event(compiled, contact=contact, event=raw, recent_events=earlier)

    matches = [event_matches(position) for position in range(len(ordered))]
    return _ledger(compiled, matches, match_fit(compiled, contact=contact), moment)


def replay_many(
    compiled: CompiledRuleSet,
    contacts: Mapping[str, Mapping[str, Any]],
    histories: Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    now: datetime,
) -> tuple[dict[str, Replay], dict[str, ScoringInputError]]:
    """Replay many contacts' histories, with the same result as `replay` for each.

    The fit rules, and the events when `events_match_alone` holds, are matched for all contacts
    together, in shared engine sessions. Returns the replays, and the error of each contact whose
    input is malformed, which is left out.
    """
    moment = parse_time(now, "now")
    failed: dict[str, ScoringInputError] = {}
    ordered: dict[str, list[tuple[EventRecord, Mapping[str, Any]]]] = {}
    for contact_id, contact in contacts.items():
        try:
            # The events first, as `replay` checks them, so both report the same error.
            events = _ordered_events(histories.get(contact_id, []))
            if not isinstance(contact, Mapping):
                raise ScoringInputError("contact", "must be an object")
            ordered[contact_id] = events
        except ScoringInputError as error:
            failed[contact_id] = error

    if not events_match_alone(compiled):
        replays = {}
        for contact_id in ordered:
            try:
                replays[contact_id] = replay(compiled, contact=contacts[contact_id], events=histories.get(contact_id, []), now=now)
            except ScoringInputError as error:
                failed[contact_id] = error
        return replays, failed

    records = [record for events in ordered.values() for record, _raw in events]
    event_matches = iter(match_events_alone(compiled, records))
    fit_matches = match_fit_many(compiled, [contacts[contact_id] for contact_id in ordered])
    replays = {
        contact_id: _ledger(compiled, [next(event_matches) for _ in events], fit, moment)
        for (contact_id, events), fit in zip(ordered.items(), fit_matches, strict=True)
    }
    return replays, failed


def _ledger(
    compiled: CompiledRuleSet, event_matches: Sequence[list[RuleMatch]], fit_matches: list[RuleMatch], moment: datetime
) -> Replay:
    """Award each event's matches in time order, then the fit points, and score the ledger."""
    totals = LedgerTotals()
    entries: list[LedgerEntry] = []
    for matches in event_matches:
        new_entries = award(compiled.rule_set, matches, totals=totals)
        totals = totals.plus(compiled.rule_set, new_entries)
        entries.extend(new_entries)

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
