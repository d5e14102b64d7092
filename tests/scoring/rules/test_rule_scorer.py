import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.scoring.rules import (
    CapPeriod,
    EntryReason,
    LedgerEntry,
    LedgerTotals,
    RuleKind,
    RuleMatch,
    RuleSet,
    ScoreTally,
    ScoringInputError,
    award,
    compute_score,
    fit_changes,
    fit_points,
    parse_rule_set,
    period_start,
)
from tests.scoring.rules.builders import START, reference_document


def rule_set(*rules: dict[str, Any], **changes: Any) -> RuleSet:
    return parse_rule_set({"mql_threshold": 50, "rules": list(rules), **changes})


def engagement(name: str, points: int, **options: Any) -> dict[str, Any]:
    return {"name": name, "kind": "engagement", "event": "page_view", "points": points, **options}


def hit(
    rule: str, points: int, event_id: str, days: float = 0, kind: RuleKind = RuleKind.ENGAGEMENT
) -> RuleMatch:
    return RuleMatch(
        rule=rule,
        kind=kind,
        points=points,
        event_id=event_id,
        occurred_at=START + timedelta(days=days),
        event_ids=(event_id,),
    )


def award_in_turn(
    rules: RuleSet, matches: list[RuleMatch], totals: LedgerTotals | None = None
) -> list[LedgerEntry]:
    """Award matches one event at a time, as the service does, carrying the totals forward."""
    totals = totals or LedgerTotals()
    entries: list[LedgerEntry] = []
    for match in matches:
        new = award(rules, [match], totals=totals)
        totals = totals.plus(rules, new)
        entries.extend(new)
    return entries


def entry(
    rule: str, points: int, days: float, kind: RuleKind = RuleKind.ENGAGEMENT, event_id: str | None = None
) -> LedgerEntry:
    return LedgerEntry(
        rule=rule,
        kind=kind,
        points=points,
        rule_points=points,
        occurred_at=START + timedelta(days=days),
        reason=EntryReason.FIT_MATCHED if kind is RuleKind.FIT else EntryReason.MATCHED,
        event_id=event_id if kind is RuleKind.FIT else (event_id or f"{rule}-{days}"),
    )


class TestCaps:
    def test_lifetime_cap_stops_points(self) -> None:
        rules = rule_set(engagement("pricing-visit", 15, cap={"max_points": 30}))
        matches = [hit("pricing-visit", 15, f"p{index}", days=index) for index in range(3)]

        entries = award_in_turn(rules, matches)

        assert [(item.points, item.reason) for item in entries] == [
            (15, EntryReason.MATCHED),
            (15, EntryReason.MATCHED),
            (0, EntryReason.CAPPED),
        ]
        assert all(item.rule_points == 15 for item in entries)

    def test_cap_grants_remainder(self) -> None:
        rules = rule_set(engagement("pricing-visit", 15, cap={"max_points": 40}))
        matches = [hit("pricing-visit", 15, f"p{index}", days=index) for index in range(4)]

        assert [item.points for item in award_in_turn(rules, matches)] == [15, 15, 10, 0]

    def test_cap_counts_existing_ledger(self) -> None:
        rules = rule_set(engagement("pricing-visit", 15, cap={"max_points": 30}))
        ledger = [entry("pricing-visit", 15, days=0, event_id="old"), entry("other-rule", 50, days=0)]
        totals = LedgerTotals.from_entries(rules, ledger)

        entries = award_in_turn(
            rules, [hit("pricing-visit", 15, "p1", 5), hit("pricing-visit", 15, "p2", 6)], totals
        )

        assert [item.points for item in entries] == [15, 0]
        assert totals.lifetime == {"pricing-visit": 15, "other-rule": 50}

    def test_weekly_cap_resets_on_monday(self) -> None:
        rules = rule_set(
            {
                **engagement("content-download", 8, cap={"max_points": 16, "period": "week"}),
                "event": "content_downloaded",
            }
        )
        # START is Monday 2024-06-03; day 6 is Sunday, day 7 the next Monday.
        matches = [hit("content-download", 8, f"d{day}", days=day) for day in (0, 1, 6, 7, 8, 9)]

        entries = award_in_turn(rules, matches)

        assert [item.points for item in entries] == [8, 8, 0, 8, 8, 0]

    def test_daily_cap(self) -> None:
        rules = rule_set(engagement("email-open", 1, cap={"max_points": 2, "period": "day"}))
        matches = [hit("email-open", 1, f"o{index}", days=index * 0.25) for index in range(8)]

        entries = award_in_turn(rules, matches)

        # START is 09:00 UTC, so quarter-day steps fall on 09:00, 15:00, 21:00, 03:00 (next day), ...
        assert [item.points for item in entries] == [1, 1, 0, 1, 1, 0, 0, 1]

    def test_negative_cap_bounds_deduction(self) -> None:
        rules = rule_set(engagement("hard-bounce", -15, cap={"max_points": 20}))
        matches = [hit("hard-bounce", -15, f"b{index}", days=index) for index in range(3)]

        assert [item.points for item in award_in_turn(rules, matches)] == [-15, -5, 0]

    def test_late_event_counts_in_its_own_period(self) -> None:
        rules = rule_set(engagement("email-open", 1, cap={"max_points": 1, "period": "month"}))
        june = award(rules, [hit("email-open", 1, "june", days=0)])
        totals = LedgerTotals.from_entries(rules, june)

        late_may = award(rules, [hit("email-open", 1, "may", days=-10)], totals=totals)
        june_again = award(rules, [hit("email-open", 1, "june-2", days=5)], totals=totals)

        assert [item.points for item in late_may] == [1]
        assert [item.points for item in june_again] == [0]


class TestOneEventOnce:
    def test_repeated_event_in_matches_earns_once(self) -> None:
        rules = rule_set(engagement("pricing-visit", 15))

        entries = award(rules, [hit("pricing-visit", 15, "p1"), hit("pricing-visit", 15, "p1")])

        assert [item.event_id for item in entries] == ["p1"]

    def test_event_already_in_ledger_earns_nothing(self) -> None:
        rules = rule_set(engagement("pricing-visit", 15), engagement("any-page", 1))
        totals = LedgerTotals.from_entries(rules, [entry("pricing-visit", 15, 0, event_id="p1")])

        entries = award(rules, [hit("pricing-visit", 15, "p1"), hit("any-page", 1, "p1")], totals=totals)

        assert [(item.rule, item.event_id) for item in entries] == [("any-page", "p1")]
        assert ("pricing-visit", "p1") in totals.awarded

    def test_capped_row_still_marks_event(self) -> None:
        rules = rule_set(engagement("pricing-visit", 15, cap={"max_points": 15}))
        first = award_in_turn(rules, [hit("pricing-visit", 15, "p1"), hit("pricing-visit", 15, "p2")])
        totals = LedgerTotals.from_entries(rules, first)

        assert award(rules, [hit("pricing-visit", 15, "p2")], totals=totals) == []

    def test_award_rejects_fit_match(self) -> None:
        rules = parse_rule_set(reference_document())
        fit = RuleMatch(
            rule="vp-title", kind=RuleKind.FIT, points=10, event_id=None, occurred_at=None, event_ids=()
        )

        with pytest.raises(ScoringInputError, match="fit_changes"):
            award(rules, [fit])

    def test_award_rejects_unknown_rule(self) -> None:
        rules = rule_set(engagement("pricing-visit", 15))

        with pytest.raises(ScoringInputError, match="'gone' is not an event rule"):
            award(rules, [hit("gone", 5, "p1")])


class TestFitChanges:
    RULES = parse_rule_set(reference_document())

    def fit_match(self, rule: str) -> RuleMatch:
        points = self.RULES.rule(rule).points  # type: ignore[union-attr]
        return RuleMatch(
            rule=rule, kind=RuleKind.FIT, points=points, event_id=None, occurred_at=None, event_ids=()
        )

    def test_new_contact_gets_matched_rules(self) -> None:
        matches = [self.fit_match("vp-title"), self.fit_match("student")]

        entries = fit_changes(self.RULES, matches, current={}, at=START)

        assert [(item.rule, item.points, item.reason) for item in entries] == [
            ("vp-title", 10, EntryReason.FIT_MATCHED),
            ("student", -20, EntryReason.FIT_MATCHED),
        ]
        assert all(item.kind is RuleKind.FIT and item.occurred_at == START for item in entries)

    def test_unchanged_fit_writes_nothing(self) -> None:
        current = {"vp-title": 10}

        assert fit_changes(self.RULES, [self.fit_match("vp-title")], current=current, at=START) == []

    def test_rule_that_stops_matching_is_reversed(self) -> None:
        current = {"vp-title": 10, "mid-size-company": 10}

        entries = fit_changes(self.RULES, [self.fit_match("vp-title")], current=current, at=START)

        assert [(item.rule, item.points, item.reason) for item in entries] == [
            ("mid-size-company", -10, EntryReason.FIT_UNMATCHED)
        ]

    def test_rule_removed_from_rule_set_is_reversed(self) -> None:
        entries = fit_changes(self.RULES, [], current={"old-rule": 7, "vp-title": 0}, at=START)

        assert [(item.rule, item.points, item.rule_points) for item in entries] == [("old-rule", -7, 0)]

    def test_fit_points_sums_ledger(self) -> None:
        ledger = [
            entry("vp-title", 10, 0, kind=RuleKind.FIT),
            entry("mid-size-company", 10, 1, kind=RuleKind.FIT),
            entry("mid-size-company", -10, 2, kind=RuleKind.FIT),
            entry("pricing-visit", 15, 2),
        ]

        assert fit_points(ledger) == {"vp-title": 10}

    def test_naive_time_rejected(self) -> None:
        with pytest.raises(ScoringInputError) as raised:
            fit_changes(self.RULES, [], current={}, at=datetime(2024, 6, 3))

        assert raised.value.field == "at"


class TestHalfLifeDecay:
    RULES = parse_rule_set(reference_document())

    @pytest.mark.parametrize(
        ("days", "expected"),
        [
            (0, 16.0),
            (15, 11.31),  # 16 * 0.5 ** 0.5
            (30, 8.0),  # one half-life
            (60, 4.0),
        ],
    )
    def test_engagement_halves_every_thirty_days(self, days: int, expected: float) -> None:
        ledger = [entry("content-download", 16, 0)]

        score = compute_score(self.RULES, ledger, now=START + timedelta(days=days))

        assert score.engagement == expected
        assert score.engagement_before_decay == 16

    def test_thirty_day_breakdown(self) -> None:
        ledger = [
            entry("vp-title", 10, 0, kind=RuleKind.FIT),
            entry("pricing-visit", 15, 0),
            entry("email-click", 3, 20),
            entry("hard-bounce", -15, 10),  # its rule does not decay
        ]

        score = compute_score(self.RULES, ledger, now=START + timedelta(days=30))

        # 15 * 0.5 + 3 * 0.5 ** (10 / 30) - 15 = 7.5 + 2.3811 - 15
        assert score.fit == 10
        assert score.engagement == -5.12
        assert score.total == 4.88
        assert score.linear_decay == 0.0
        current = {item.entry.rule: round(item.current_points, 4) for item in score.entries}
        assert current == {
            "vp-title": 10.0,
            "pricing-visit": 7.5,
            "email-click": 2.3811,
            "hard-bounce": -15.0,
        }

    def test_entries_after_now_do_not_grow(self) -> None:
        score = compute_score(self.RULES, [entry("pricing-visit", 15, 5)], now=START)

        assert score.engagement == 15.0

    def test_retired_rule_uses_set_decay(self) -> None:
        score = compute_score(self.RULES, [entry("retired-rule", 20, 0)], now=START + timedelta(days=30))

        assert score.engagement == 10.0

    def test_now_must_be_aware(self) -> None:
        with pytest.raises(ScoringInputError) as raised:
            compute_score(self.RULES, [], now=datetime(2024, 7, 1))

        assert raised.value.field == "now"


class TestLinearDecay:
    RULES = rule_set(
        engagement("pricing-visit", 15),
        engagement("hard-bounce", -15, decay={"type": "none"}),
        engagement("slow-rule", 8, decay={"type": "half_life", "half_life_days": 10}),
        decay={"type": "linear", "points_per_day": 1, "grace_days": 7},
    )

    @pytest.mark.parametrize(
        ("days", "expected"),
        [
            (0, 30.0),
            (7, 30.0),  # grace period
            (17, 20.0),
            (30, 7.0),
            (40, 0.0),  # never below zero
        ],
    )
    def test_points_per_idle_day(self, days: int, expected: float) -> None:
        ledger = [entry("pricing-visit", 15, -3), entry("pricing-visit", 15, 0)]

        score = compute_score(self.RULES, ledger, now=START + timedelta(days=days))

        assert score.engagement == expected
        assert score.linear_decay == expected - 30

    def test_only_decaying_rules_lose_points(self) -> None:
        ledger = [entry("pricing-visit", 15, 0), entry("hard-bounce", -15, 0), entry("slow-rule", 8, 0)]

        score = compute_score(self.RULES, ledger, now=START + timedelta(days=17))

        # pricing 15 - 10 idle days; bounce unchanged; slow-rule 8 * 0.5 ** 1.7
        assert score.engagement == round(5 - 15 + 8 * 0.5**1.7, 2)

    def test_explicit_last_activity(self) -> None:
        ledger = [entry("pricing-visit", 15, 0)]

        score = compute_score(
            self.RULES, ledger, now=START + timedelta(days=20), last_activity_at=START + timedelta(days=10)
        )

        assert score.engagement == 12.0

    def test_negative_points_alone_do_not_count_as_activity(self) -> None:
        rules = rule_set(engagement("complaint", -10), decay={"type": "linear", "points_per_day": 1})

        score = compute_score(rules, [entry("complaint", -10, 0)], now=START + timedelta(days=30))

        assert score.engagement == -10.0


class TestScoreTally:
    """A tally fed in steps and moved in time gives what adding up the whole ledger at once gives."""

    # Rules of every kind of decay: half-life, none, and the rule set's linear decay.
    RULES = TestLinearDecay.RULES

    def ledger(self, seed: int, size: int) -> list[LedgerEntry]:
        generator = random.Random(seed)
        rules = [("pricing-visit", 15), ("hard-bounce", -15), ("slow-rule", 8), ("retired", 6)]
        entries = []
        for index in range(size):
            # Whole days only, so many rows tie on time and the order among equal keys matters.
            days = generator.randrange(0, 12)
            if generator.random() < 0.2:
                entries.append(entry(f"fit-{index % 3}", generator.choice([5, -5]), days, kind=RuleKind.FIT))
            else:
                name, points = generator.choice(rules)
                entries.append(entry(name, points, days, event_id=f"e{index % 7}"))
            if generator.random() < 0.2:
                # The same sort key with another reason: only the order of arrival distinguishes the two.
                entries.append(replace(entries[-1], reason=EntryReason.CAPPED))
        return entries

    @pytest.mark.parametrize("seed", [1, 2, 3])
    def test_steps_and_moves_match_one_sum(self, seed: int) -> None:
        ledger = self.ledger(seed, 90)
        first_now, later = START + timedelta(days=12), START + timedelta(days=26, hours=5)

        tally = ScoreTally(self.RULES, ledger[:30], now=first_now)
        for start in range(30, 60, 7):
            tally.add(ledger[start : min(start + 7, 60)])
        assert tally.breakdown() == compute_score(self.RULES, ledger[:60], now=first_now)

        moved = tally.at(later)
        moved.add(ledger[60:])
        assert moved.breakdown() == compute_score(self.RULES, ledger, now=later)
        # Moving returns a new tally; the first still scores its own instant.
        assert tally.breakdown() == compute_score(self.RULES, ledger[:60], now=first_now)

    def test_bad_entry_added_is_named(self) -> None:
        tally = ScoreTally(self.RULES, [], now=START)

        with pytest.raises(ScoringInputError) as raised:
            tally.add([entry("pricing-visit", 15, 0), "not an entry"])  # type: ignore[list-item]

        assert raised.value.field == "entries[1]"


class TestLedgerEntries:
    def test_plain_strings_become_enums(self) -> None:
        row = LedgerEntry(
            rule="pricing-visit",
            kind="engagement",  # type: ignore[arg-type]
            points=15,
            rule_points=15,
            occurred_at=START,
            reason="matched",  # type: ignore[arg-type]
            event_id="p1",
            event_ids=["p1"],  # type: ignore[arg-type]
        )

        assert row.kind is RuleKind.ENGAGEMENT
        assert row.reason is EntryReason.MATCHED
        assert row.event_ids == ("p1",)

    def test_unknown_kind_rejected(self) -> None:
        with pytest.raises(ScoringInputError, match="'bonus' is not a valid RuleKind"):
            LedgerEntry(rule="x", kind="bonus", points=1, rule_points=1, occurred_at=START, reason="matched")  # type: ignore[arg-type]

    def test_naive_entry_time_rejected(self) -> None:
        naive = LedgerEntry(
            rule="x",
            kind=RuleKind.ENGAGEMENT,
            points=1,
            rule_points=1,
            occurred_at=datetime(2024, 6, 3),
            reason=EntryReason.MATCHED,
        )

        with pytest.raises(ScoringInputError) as raised:
            compute_score(parse_rule_set(reference_document()), [naive], now=START)

        assert raised.value.field == "entries[0].occurred_at"


class TestPeriodStart:
    @pytest.mark.parametrize(
        ("period", "at", "expected"),
        [
            (CapPeriod.DAY, "2024-06-05T23:30:00-02:00", "2024-06-06T00:00:00+00:00"),
            (CapPeriod.WEEK, "2024-06-09T23:59:59+00:00", "2024-06-03T00:00:00+00:00"),
            (CapPeriod.WEEK, "2024-06-10T00:00:00+00:00", "2024-06-10T00:00:00+00:00"),
            (CapPeriod.MONTH, "2024-02-29T12:00:00+00:00", "2024-02-01T00:00:00+00:00"),
        ],
    )
    def test_period_start_in_utc(self, period: CapPeriod, at: str, expected: str) -> None:
        start = period_start(period, datetime.fromisoformat(at))

        assert start == datetime.fromisoformat(expected)
        assert start.tzinfo is UTC
