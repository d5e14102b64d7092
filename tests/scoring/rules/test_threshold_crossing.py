"""Edge-triggered thresholds: fire on the upward crossing, once per contact unless re-armed."""

from dataclasses import dataclass, field
from datetime import timedelta

import pytest

from services.scoring.rules import (
    LedgerEntry,
    LedgerTotals,
    ScoringInputError,
    ThresholdCrossing,
    award,
    compute_score,
    cross_threshold,
    match_event,
)
from tests.scoring.rules.builders import START, CompileDocument, event


@dataclass
class Trigger:
    """A `score >= threshold` trigger whose action records calls in a sink, per contact."""

    threshold: float
    rearm: bool = False
    fired: dict[str, bool] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    exits: list[str] = field(default_factory=list)

    def observe(self, contact_id: str, previous: float | None, new: float) -> None:
        crossing = cross_threshold(
            previous=previous,
            new=new,
            threshold=self.threshold,
            already_fired=self.fired.get(contact_id, False),
            rearm=self.rearm,
        )
        self.fired[contact_id] = crossing.fired
        if crossing.fire:
            self.calls.append(contact_id)
        if crossing.exited:
            self.exits.append(contact_id)

    def calls_for(self, contact_id: str) -> int:
        return self.calls.count(contact_id)


def run_steps(trigger: Trigger, deltas: list[int]) -> list[int]:
    """Apply score changes to contact P from 0, returning the notify_sales count after each."""
    score = 0
    counts = []
    for delta in deltas:
        trigger.observe("P", score, score + delta)
        score += delta
        counts.append(trigger.calls_for("P"))
    return counts


class TestCaseTenSteps:
    def test_steps_one_to_four_default(self) -> None:
        trigger = Trigger(threshold=10)

        counts = run_steps(trigger, [+12, +1, -5, +5])

        # 0 -> 12 fires; 13 stays; 8 exits; 13 again does not fire without re-arm.
        assert counts == [1, 1, 1, 1]
        assert trigger.exits == ["P"]

    def test_step_four_with_rearm(self) -> None:
        trigger = Trigger(threshold=10, rearm=True)

        counts = run_steps(trigger, [+12, +1, -5, +5])

        assert counts == [1, 1, 1, 2]

    def test_step_five_backfill_existing_contacts(self) -> None:
        trigger = Trigger(threshold=50)
        existing = {"Q": 60, "R": 40, "S": 55}

        for contact_id, score in existing.items():
            trigger.observe(contact_id, None, score)
        after_create = list(trigger.calls)
        for contact_id, score in existing.items():  # re-saving the threshold unchanged
            trigger.observe(contact_id, None, score)

        assert after_create == ["Q", "S"]
        assert trigger.calls == ["Q", "S"]

    def test_steps_through_scoring_pipeline(self, compile_document: CompileDocument) -> None:
        """The same steps with real rules: each event kind changes the score by one step's delta."""
        rules = [
            {"name": f"step-{name}", "kind": "engagement", "event": name, "points": points}
            for name, points in [("big_win", 12), ("small_win", 1), ("setback", -5), ("comeback", 5)]
        ]
        compiled = compile_document({"mql_threshold": 10, "rules": rules})
        trigger = Trigger(threshold=compiled.mql_threshold)
        ledger: list[LedgerEntry] = []
        previous = 0.0
        counts = []

        for day, event_type in enumerate(["big_win", "small_win", "setback", "comeback"]):
            current = event(f"e{day}", event_type, days=day)
            matches = match_event(compiled, contact={}, event=current)
            ledger += award(
                compiled.rule_set, matches, totals=LedgerTotals.from_entries(compiled.rule_set, ledger)
            )
            new = compute_score(compiled.rule_set, ledger, now=START + timedelta(days=day)).total
            trigger.observe("P", previous, new)
            previous = new
            counts.append(trigger.calls_for("P"))

        assert counts == [1, 1, 1, 1]
        assert previous == 13


class TestCrossThreshold:
    @pytest.mark.parametrize(
        ("previous", "new", "already_fired", "rearm", "expected"),
        [
            (0, 12, False, False, ThresholdCrossing(fire=True, exited=False, fired=True)),
            (0, 10, False, False, ThresholdCrossing(fire=True, exited=False, fired=True)),  # >= fires
            (0, 9.99, False, False, ThresholdCrossing(fire=False, exited=False, fired=False)),
            (12, 13, True, False, ThresholdCrossing(fire=False, exited=False, fired=True)),
            (13, 8, True, False, ThresholdCrossing(fire=False, exited=True, fired=True)),
            (8, 13, True, False, ThresholdCrossing(fire=False, exited=False, fired=True)),
            (8, 13, True, True, ThresholdCrossing(fire=True, exited=False, fired=True)),
            (12, 13, True, True, ThresholdCrossing(fire=False, exited=False, fired=True)),  # no crossing
            (5, 30, False, False, ThresholdCrossing(fire=True, exited=False, fired=True)),  # a jump
            (None, 10, False, False, ThresholdCrossing(fire=True, exited=False, fired=True)),
            (None, 10, True, False, ThresholdCrossing(fire=False, exited=False, fired=True)),
            (None, 9, False, False, ThresholdCrossing(fire=False, exited=False, fired=False)),
            (-20, 10, False, False, ThresholdCrossing(fire=True, exited=False, fired=True)),
        ],
    )
    def test_crossing_table(
        self,
        previous: float | None,
        new: float,
        already_fired: bool,
        rearm: bool,
        expected: ThresholdCrossing,
    ) -> None:
        crossing = cross_threshold(
            previous=previous, new=new, threshold=10, already_fired=already_fired, rearm=rearm
        )

        assert crossing == expected

    @pytest.mark.parametrize("field_name", ["previous", "new", "threshold"])
    def test_non_finite_input_rejected(self, field_name: str) -> None:
        values = {"previous": 0.0, "new": 1.0, "threshold": 10.0, field_name: float("nan")}

        with pytest.raises(ScoringInputError) as raised:
            cross_threshold(
                previous=values["previous"],
                new=values["new"],
                threshold=values["threshold"],
                already_fired=False,
            )

        assert raised.value.field == field_name
