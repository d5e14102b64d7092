"""The ledger and score depend only on the inputs: not on the process, the engine instance or order."""

import random
from datetime import timedelta
from typing import Any

import pytest

from services.scoring.rules import (
    CompiledRuleSet,
    EntryReason,
    LedgerEntry,
    LedgerTotals,
    award,
    compute_score,
    match_event,
    replay,
)
from tests.scoring.rules.builders import START, CompileDocument, contact, event, reference_document

NOW = START + timedelta(days=40)


def history() -> list[dict[str, Any]]:
    """About two months of mixed events, with ties in time and repeated types."""
    generator = random.Random(20240603)
    events = []
    kinds: list[tuple[str, dict[str, Any]]] = [
        ("page_view", {"url": "https://acme.example/pricing"}),
        ("page_view", {"url": "https://acme.example/blog"}),
        ("email_clicked", {}),
        ("email_opened", {}),
        ("content_downloaded", {"asset": "guide"}),
        ("form_submitted", {"form": "demo"}),
        ("email_bounced", {"bounce_type": "soft"}),
    ]
    for index in range(60):
        event_type, properties = generator.choice(kinds)
        day = generator.randrange(0, 35) + generator.choice([0, 0.5])
        events.append(event(f"e{index:02d}", event_type, days=day, **properties))
    return events


def ledger_keys(entries: tuple[LedgerEntry, ...] | list[LedgerEntry]) -> list[tuple[str, str | None, int]]:
    return sorted((entry.rule, entry.event_id, entry.points) for entry in entries)


class TestReplayDeterminism:
    def test_two_compiled_instances_agree(self, compile_document: CompileDocument) -> None:
        first = compile_document(reference_document())
        second = compile_document(reference_document())

        first_replay = replay(first, contact=contact(), events=history(), now=NOW)
        second_replay = replay(second, contact=contact(), events=history(), now=NOW)

        assert first_replay.entries == second_replay.entries
        assert first_replay.score == second_replay.score
        rules = {entry.rule for entry in first_replay.entries}
        assert {"click-then-pricing", "pricing-visit", "content-download", "vp-title"} <= rules
        assert any(entry.reason is EntryReason.CAPPED for entry in first_replay.entries)

    @pytest.mark.parametrize("seed", [1, 2, 3, 4])
    def test_shuffled_history_gives_same_ledger(self, reference: CompiledRuleSet, seed: int) -> None:
        events = history()
        shuffled = events[:]
        random.Random(seed).shuffle(shuffled)

        expected = replay(reference, contact=contact(), events=events, now=NOW)
        actual = replay(reference, contact=contact(), events=shuffled, now=NOW)

        assert actual.entries == expected.entries
        assert actual.score == expected.score

    def test_repeated_events_count_once(self, reference: CompiledRuleSet) -> None:
        events = history()

        doubled = replay(reference, contact=contact(), events=events + events, now=NOW)
        single = replay(reference, contact=contact(), events=events, now=NOW)

        assert doubled.entries == single.entries


class TestOrderIndependence:
    def test_recent_events_order_does_not_matter(self, reference: CompiledRuleSet) -> None:
        current = event("p9", "page_view", days=10, url="/pricing")
        recent = [event(f"c{day}", "email_clicked", days=day) for day in (3, 4, 5, 6, 9)]

        expected = match_event(reference, contact=contact(), event=current, recent_events=recent)
        for seed in range(5):
            shuffled = recent[:]
            random.Random(seed).shuffle(shuffled)
            assert (
                match_event(reference, contact=contact(), event=current, recent_events=shuffled) == expected
            )

    def test_match_order_does_not_matter(self, reference: CompiledRuleSet) -> None:
        matches = []
        for index, day in enumerate([0, 1, 2, 3]):
            visit = event(f"p{index}", "page_view", days=day, url="/pricing")
            matches.extend(match_event(reference, contact=contact(), event=visit))

        expected = award(reference.rule_set, matches)
        reversed_award = award(reference.rule_set, list(reversed(matches)))

        assert reversed_award == expected
        assert [entry.points for entry in expected] == [15, 15, 0, 0]

    def test_ledger_order_does_not_change_score(self, reference: CompiledRuleSet) -> None:
        entries = list(replay(reference, contact=contact(), events=history(), now=NOW).entries)
        expected = compute_score(reference.rule_set, entries, now=NOW)

        random.Random(7).shuffle(entries)

        assert compute_score(reference.rule_set, entries, now=NOW) == expected


class TestLiveArrival:
    """Events processed one by one as they arrive, out of time order, as the worker would."""

    def process(self, compiled: CompiledRuleSet, arrivals: list[dict[str, Any]]) -> list[LedgerEntry]:
        received: list[dict[str, Any]] = []
        totals = LedgerTotals()
        ledger: list[LedgerEntry] = []
        for current in arrivals:
            matches = match_event(compiled, contact=contact(), event=current, recent_events=received)
            new_entries = award(compiled.rule_set, matches, totals=totals)
            totals = totals.plus(compiled.rule_set, new_entries)
            ledger.extend(new_entries)
            received.append(current)
        return ledger

    def test_uncapped_rows_match_any_order(self, compile_document: CompileDocument) -> None:
        document = reference_document()
        for rule in document["rules"]:
            rule.pop("cap", None)
        compiled = compile_document(document)
        events = history()

        in_order = self.process(compiled, sorted(events, key=lambda item: (item["occurred_at"], item["id"])))
        for seed in range(3):
            arrivals = events[:]
            random.Random(seed).shuffle(arrivals)
            assert ledger_keys(self.process(compiled, arrivals)) == ledger_keys(in_order)

    def test_capped_points_match_any_order(self, reference: CompiledRuleSet) -> None:
        """With caps the arrival order may move points to another event, but never changes how many."""
        events = history()
        in_order = self.process(reference, sorted(events, key=lambda item: (item["occurred_at"], item["id"])))
        expected = compute_score(reference.rule_set, in_order, now=NOW).engagement_before_decay

        for seed in range(3):
            arrivals = events[:]
            random.Random(seed).shuffle(arrivals)
            ledger = self.process(reference, arrivals)
            assert compute_score(reference.rule_set, ledger, now=NOW).engagement_before_decay == expected
