from datetime import datetime, timedelta
from typing import Any

import pytest

from services.scoring.rules import (
    CompiledRuleSet,
    RuleKind,
    ScoringInputError,
    match_event,
    match_fit,
)
from tests.scoring.rules.builders import (
    START,
    CompileDocument,
    contact,
    event,
    single_rule_document,
)


def rules_for(
    compiled: CompiledRuleSet, current: dict[str, Any], recent: list[dict[str, Any]] | None = None
) -> list[str]:
    matches = match_event(compiled, contact=contact(), event=current, recent_events=recent or [])
    return [match.rule for match in matches]


def pricing(event_id: str, days: float) -> dict[str, Any]:
    return event(event_id, "page_view", days=days, url="https://acme.example/pricing?plan=team")


def click(event_id: str, days: float) -> dict[str, Any]:
    return event(event_id, "email_clicked", days=days, url="https://acme.example/blog")


class TestFitRules:
    def test_target_contact_matches_positive_fit(self, reference: CompiledRuleSet) -> None:
        matches = match_fit(reference, contact=contact())

        assert [match.rule for match in matches] == ["vp-title", "mid-size-company", "target-industry"]
        assert [match.points for match in matches] == [10, 10, 5]
        assert all(match.kind is RuleKind.FIT and match.event_id is None for match in matches)

    @pytest.mark.parametrize(
        ("overrides", "rule"),
        [
            ({"attributes": {"job_title": "PhD Student"}}, "student"),
            ({"email": "mole@rival.example"}, "competitor"),
            ({"consent": {"status": "unsubscribed"}}, "unsubscribed"),
        ],
    )
    def test_negative_fit_rule(
        self, reference: CompiledRuleSet, overrides: dict[str, Any], rule: str
    ) -> None:
        matches = {match.rule: match.points for match in match_fit(reference, contact=contact(**overrides))}

        assert rule in matches
        assert matches[rule] < 0

    def test_contact_outside_target_matches_nothing(self, reference: CompiledRuleSet) -> None:
        outsider = {
            "email": "a@b.example",
            "attributes": {"job_title": "Engineer"},
            "company": {"size": 10000},
        }

        assert match_fit(reference, contact=outsider) == []

    def test_rule_set_without_fit_rules(self, compile_document: CompileDocument) -> None:
        compiled = compile_document(
            single_rule_document(
                {"name": "click", "kind": "engagement", "event": "email_clicked", "points": 3}
            )
        )

        assert match_fit(compiled, contact=contact()) == []


class TestEngagementRules:
    @pytest.mark.parametrize(
        ("current", "expected"),
        [
            (pricing("p1", 0), ["pricing-visit"]),
            (event("p2", "page_view", url="https://acme.example/blog/pricing-models"), ["pricing-visit"]),
            (event("p3", "page_view", url="https://acme.example/blog"), []),
            (event("p4", "page_view"), []),
            (event("d1", "content_downloaded", asset="ebook"), ["content-download"]),
            (event("o1", "email_opened"), ["email-open"]),
            (event("o2", "email_opened", machine=False), ["email-open"]),
            (event("o3", "email_opened", machine=True), []),
            (click("c1", 0), ["email-click"]),
            (event("f1", "form_submitted", form="demo"), ["demo-request"]),
            (event("f2", "form_submitted", form="newsletter"), []),
            (event("b1", "email_bounced", bounce_type="hard"), ["hard-bounce"]),
            (event("b2", "email_bounced", bounce_type="soft"), []),
            (event("u1", "unsubscribed"), ["unsubscribe-event"]),
            (event("w1", "webinar_attended"), []),
        ],
    )
    def test_event_matches_rules(
        self, reference: CompiledRuleSet, current: dict[str, Any], expected: list[str]
    ) -> None:
        assert rules_for(reference, current) == expected

    def test_match_carries_event_and_points(self, reference: CompiledRuleSet) -> None:
        (match,) = match_event(
            reference, contact=contact(), event=event("b1", "email_bounced", days=2, bounce_type="hard")
        )

        assert match.rule == "hard-bounce"
        assert match.kind is RuleKind.ENGAGEMENT
        assert match.points == -15
        assert match.event_id == "b1"
        assert match.event_ids == ("b1",)
        assert match.occurred_at == START + timedelta(days=2)

    def test_rule_set_without_event_rules(self, compile_document: CompileDocument) -> None:
        compiled = compile_document(
            single_rule_document(
                {
                    "name": "vp",
                    "kind": "fit",
                    "points": 5,
                    "when": {"field": "attributes.job_title", "op": "contains", "value": "VP"},
                }
            )
        )

        assert match_event(compiled, contact=contact(), event=click("c1", 0)) == []


class TestPatternRules:
    def test_click_then_pricing_within_seven_days(self, reference: CompiledRuleSet) -> None:
        matches = match_event(
            reference, contact=contact(), event=pricing("p1", 3), recent_events=[click("c1", 0)]
        )

        assert [match.rule for match in matches] == ["pricing-visit", "click-then-pricing"]
        bonus = matches[1]
        assert bonus.kind is RuleKind.PATTERN
        assert bonus.points == 20
        assert bonus.event_id == "p1"
        assert bonus.event_ids == ("c1", "p1")

    @pytest.mark.parametrize(
        ("pricing_after", "expected"),
        [
            (timedelta(days=7), True),  # the window is inclusive
            (timedelta(days=7, seconds=1), False),
            (timedelta(days=8), False),
            (timedelta(seconds=1), True),
            (timedelta(0), False),  # "followed by" means strictly later
        ],
    )
    def test_window_boundaries(
        self, reference: CompiledRuleSet, pricing_after: timedelta, expected: bool
    ) -> None:
        current = event("p1", "page_view", at=START + pricing_after, url="/pricing")

        rules = rules_for(reference, current, [click("c1", 0)])

        assert ("click-then-pricing" in rules) is expected

    def test_wrong_order_does_not_match(self, reference: CompiledRuleSet) -> None:
        assert rules_for(reference, click("c1", 3), [pricing("p1", 0)]) == ["email-click"]

    def test_late_click_completes_pattern_on_last_step(self, reference: CompiledRuleSet) -> None:
        """A click recorded after the pricing visit it preceded still earns the bonus, keyed on the visit."""
        matches = match_event(
            reference, contact=contact(), event=click("c1", 0), recent_events=[pricing("p1", 2)]
        )

        bonus = [match for match in matches if match.rule == "click-then-pricing"]
        assert len(bonus) == 1
        assert bonus[0].event_id == "p1"
        assert bonus[0].event_ids == ("c1", "p1")
        assert bonus[0].occurred_at == START + timedelta(days=2)

    def test_one_match_per_last_event(self, reference: CompiledRuleSet) -> None:
        recent = [click("c2", 2), click("c1", 1)]

        matches = match_event(reference, contact=contact(), event=pricing("p1", 3), recent_events=recent)

        bonus = [match for match in matches if match.rule == "click-then-pricing"]
        assert [match.event_ids for match in bonus] == [("c1", "p1")]

    def test_current_event_must_take_part(self, reference: CompiledRuleSet) -> None:
        recent = [click("c1", 0), pricing("p1", 1)]

        assert rules_for(reference, event("o1", "email_opened", days=2), recent) == ["email-open"]

    def test_unnamed_event_type_matches_nothing(self, reference: CompiledRuleSet) -> None:
        recent = [click("c1", 0), pricing("p1", 1)]

        assert "email_sent" not in reference.event_types
        assert {"page_view", "email_clicked", "email_opened"} <= reference.event_types
        assert rules_for(reference, event("s1", "email_sent", days=1.5, url="https://acme.example/pricing"), recent) == []

    def test_recent_events_repeats_and_current_ignored(self, reference: CompiledRuleSet) -> None:
        current = pricing("p1", 3)
        recent = [click("c1", 0), click("c1", 0), current, pricing("p1", 3)]

        matches = match_event(reference, contact=contact(), event=current, recent_events=recent)

        assert [(match.rule, match.event_ids) for match in matches] == [
            ("pricing-visit", ("p1",)),
            ("click-then-pricing", ("c1", "p1")),
        ]

    def test_events_outside_history_window_ignored(self, reference: CompiledRuleSet) -> None:
        assert reference.history_window == timedelta(days=7)

        rules = rules_for(
            reference, pricing("p1", 30), [click("c1", 0), event("x", "email_clicked", days=-400)]
        )

        assert rules == ["pricing-visit"]

    def test_three_step_pattern(self, compile_document: CompileDocument) -> None:
        rule = {
            "name": "research-then-demo",
            "kind": "pattern",
            "points": 30,
            "within_days": 14,
            "steps": [
                {"event": "content_downloaded"},
                {
                    "event": "page_view",
                    "where": {"field": "properties.url", "op": "contains", "value": "/pricing"},
                },
                {
                    "event": "form_submitted",
                    "where": {"field": "properties.form", "op": "eq", "value": "demo"},
                },
            ],
        }
        compiled = compile_document(single_rule_document(rule))
        download = event("d1", "content_downloaded", days=0)
        visit = pricing("p1", 5)

        inside = match_event(
            compiled,
            contact={},
            event=event("f1", "form_submitted", days=13, form="demo"),
            recent_events=[visit, download],
        )
        outside = match_event(
            compiled,
            contact={},
            event=event("f2", "form_submitted", days=15, form="demo"),
            recent_events=[visit, download],
        )
        missing_step = match_event(
            compiled,
            contact={},
            event=event("f3", "form_submitted", days=6, form="demo"),
            recent_events=[download],
        )

        assert [match.event_ids for match in inside] == [("d1", "p1", "f1")]
        assert outside == []
        assert missing_step == []


class TestInputErrors:
    @pytest.mark.parametrize(
        ("current", "field"),
        [
            ({"type": "page_view", "occurred_at": START.isoformat()}, "event.id"),
            ({"id": "", "type": "page_view", "occurred_at": START.isoformat()}, "event.id"),
            ({"id": "e1", "occurred_at": START.isoformat()}, "event.type"),
            ({"id": "e1", "type": "page_view"}, "event.occurred_at"),
            ({"id": "e1", "type": "page_view", "occurred_at": "yesterday"}, "event.occurred_at"),
            (
                {"id": "e1", "type": "page_view", "occurred_at": datetime(2024, 6, 3, 9, 0)},
                "event.occurred_at",
            ),
            (
                {"id": "e1", "type": "page_view", "occurred_at": START, "properties": ["url"]},
                "event.properties",
            ),
            ("page_view", "event"),
        ],
    )
    def test_bad_event_names_field(self, reference: CompiledRuleSet, current: Any, field: str) -> None:
        with pytest.raises(ScoringInputError) as raised:
            match_event(reference, contact=contact(), event=current)

        assert raised.value.field == field

    def test_bad_recent_events_rejected_for_unscored_type(self, reference: CompiledRuleSet) -> None:
        with pytest.raises(ScoringInputError) as raised:
            match_event(reference, contact=contact(), event=event("s1", "email_sent", days=1), recent_events="not a list")  # type: ignore[arg-type]

        assert raised.value.field == "recent_events"

    def test_bad_recent_event_names_index(self, reference: CompiledRuleSet) -> None:
        recent = [click("c1", 0), {"id": "c2", "type": "email_clicked", "occurred_at": "2024-06-03T09:00:00"}]

        with pytest.raises(ScoringInputError) as raised:
            match_event(reference, contact=contact(), event=pricing("p1", 1), recent_events=recent)

        assert raised.value.field == "recent_events[1].occurred_at"
        assert "UTC offset" in raised.value.message

    def test_contact_must_be_object(self, reference: CompiledRuleSet) -> None:
        with pytest.raises(ScoringInputError) as raised:
            match_fit(reference, contact=None)  # type: ignore[arg-type]

        assert raised.value.field == "contact"

    def test_integer_event_id_accepted(self, reference: CompiledRuleSet) -> None:
        current = {"id": 42, "type": "email_clicked", "occurred_at": START}

        (match,) = match_event(reference, contact=contact(), event=current)

        assert match.event_id == "42"
