"""Sequence definitions: parsing, field-path errors, step ids, navigation and evaluation."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.sequencer.sequences import (
    ContactFacts,
    SequenceDefinition,
    SequenceValidationError,
    Stage,
    evaluate_branch,
    first_step,
    goal_reached,
    may_reenter,
    next_step,
    parse_sequence,
    stage_reached,
)
from services.sequencer.sequences.schema import EventTrigger


def pricing_sequence() -> dict[str, Any]:
    return {
        "name": "Pricing page follow-up",
        "trigger": {
            "type": "event",
            "event_type": "page_view",
            "conditions": [{"property": "url", "op": "matches", "value": r"/pricing(/|$|\?)"}],
        },
        "timezone": "Europe/Berlin",
        "quiet_hours": {"start": "21:00", "end": "08:00", "weekdays": ["mon", "tue", "wed", "thu", "fri"]},
        "reentry": {"mode": "after", "days": 30},
        "goal": {"type": "stage_reached", "stage": "sql"},
        "steps": [
            {"id": "welcome", "email": {"template_id": "tpl-welcome"}},
            {"wait": {"days": 2, "at": "09:00"}},
            {
                "id": "opened-welcome",
                "branch": {
                    "condition": {"type": "engagement", "step_id": "welcome", "action": "opened"},
                    "then": [{"email": {"template_id": "tpl-case-study"}}],
                    "else": [{"email": {"template_id": "tpl-resend"}}, {"wait": {"hours": 48}}],
                },
            },
            {"wait": {"until_weekday": "tue", "at": "10:00"}},
            {"id": "last", "email": {"template_id": "tpl-demo", "send_window": {"start": "09:00", "end": "17:00"}}},
        ],
    }


def errors_of(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(SequenceValidationError) as caught:
        parse_sequence(data)
    return {error.path: error.message for error in caught.value.errors}


def test_valid_definition_parses() -> None:
    definition = parse_sequence(pricing_sequence())

    assert definition.name == "Pricing page follow-up"
    assert isinstance(definition.trigger, EventTrigger)
    assert definition.reentry.days == 30
    assert definition.steps[4].email is not None
    assert definition.steps[4].email.send_window is not None


def test_missing_ids_numbered_depth_first() -> None:
    definition = parse_sequence(pricing_sequence())

    ids = [step.id for _, step in definition.iter_steps()]

    assert ids == ["welcome", "step-2", "opened-welcome", "step-4", "step-5", "step-6", "step-7", "last"]


def test_json_round_trip_keeps_ids_and_aliases() -> None:
    definition = parse_sequence(pricing_sequence())

    reread = parse_sequence(definition.model_dump_json(by_alias=True, exclude_none=True))

    assert reread == definition
    assert '"else"' in definition.model_dump_json(by_alias=True)


@pytest.mark.parametrize(
    ("change", "path", "fragment"),
    [
        (lambda d: d["steps"][1]["wait"].update(days=-1), "steps[1].wait.days", "greater than or equal to 0"),
        (lambda d: d["steps"][1]["wait"].update(hours=2), "steps[1].wait.hours", "cannot be combined with at"),
        (lambda d: d["steps"][3]["wait"].pop("at"), "steps[3].wait.at", "required with until_weekday"),
        (lambda d: d["steps"][3]["wait"].update(until_weekday="funday"), "steps[3].wait.until_weekday", "Input should be"),
        (lambda d: d["steps"][1].update(wait={}), "steps[1].wait.days", "a wait needs"),
        (lambda d: d["steps"][1].update(wait={"until_event": {"event_type": "x"}}), "steps[1].wait.timeout", "required with until_event"),
        (lambda d: d["steps"][1].update(wait={"days": 1, "timeout": {"days": 1}}), "steps[1].wait.timeout", "only allowed with until_event"),
        (lambda d: d["steps"][1].update(wait={"until": "2024-07-01T09:00", "days": 2}), "steps[1].wait.days", "cannot be combined with until"),
        (lambda d: d["steps"][0].update(wait={"days": 1}), "steps[0]", "exactly one of email, wait or branch"),
        (lambda d: d["steps"][0].update(email={}), "steps[0].email.template_id", "Field required"),
        (lambda d: d["steps"][0].update(bogus=1), "steps[0].bogus", "Extra inputs"),
        (lambda d: d["steps"][2]["branch"]["else"][1]["wait"].update(minutes=-5), "steps[2].branch.else[1].wait.minutes", "greater than"),
        (lambda d: d["steps"][2]["branch"]["condition"].update(action="forwarded"), "steps[2].branch.condition.action", "Input should be"),
        (lambda d: d["steps"][2]["branch"].update(condition={"type": "score", "value": "high"}), "steps[2].branch.condition.value", "valid number"),
        (lambda d: d["steps"][4]["email"]["send_window"].update(end="08:00"), "steps[4].email.send_window.end", "later than start"),
        (lambda d: d["trigger"].update(type="webhook"), "trigger", "does not match any of the expected tags"),
        (lambda d: d["trigger"].pop("event_type"), "trigger.event_type", "Field required"),
        (lambda d: d["trigger"]["conditions"][0].update(value="(unclosed"), "trigger.conditions[0].value", "invalid regular expression"),
        (lambda d: d["trigger"]["conditions"][0].update(op="gt", value="x"), "trigger.conditions[0].value", "must be a number"),
        (lambda d: d.update(timezone="Mars/Olympus"), "timezone", "unknown IANA timezone"),
        (lambda d: d["quiet_hours"].update(end="21:00"), "quiet_hours.end", "must differ from start"),
        (lambda d: d["reentry"].pop("days"), "reentry.days", "required when mode is 'after'"),
        (lambda d: d.update(reentry={"mode": "never", "days": 3}), "reentry.days", "only allowed when mode is 'after'"),
        (lambda d: d["goal"].update(stage="champion"), "goal.stage", "Input should be"),
        (lambda d: d.update(steps=[]), "steps", "at least 1 item"),
    ],
)
def test_error_names_field_path(change: Any, path: str, fragment: str) -> None:
    data = pricing_sequence()
    change(data)

    errors = errors_of(data)

    assert path in errors, errors
    assert fragment in errors[path]


def test_several_errors_reported_together() -> None:
    data = pricing_sequence()
    data["steps"][1]["wait"]["days"] = -1
    data["timezone"] = "Nowhere"

    errors = errors_of(data)

    assert set(errors) >= {"steps[1].wait.days", "timezone"}


def test_duplicate_ids_rejected() -> None:
    data = pricing_sequence()
    data["steps"][4]["id"] = "welcome"

    errors = errors_of(data)

    assert "duplicate step id 'welcome'" in errors["steps[4].id"]


def test_engagement_must_name_earlier_email_step() -> None:
    unknown = pricing_sequence()
    unknown["steps"][2]["branch"]["condition"]["step_id"] = "nope"
    later = pricing_sequence()
    later["steps"][2]["branch"]["condition"]["step_id"] = "last"
    not_email = pricing_sequence()
    not_email["steps"][2]["branch"]["condition"]["step_id"] = "step-2"

    path = "steps[2].branch.condition.step_id"
    assert "no step has id 'nope'" in errors_of(unknown)[path]
    assert "comes after this branch" in errors_of(later)[path]
    assert "engagement needs an email step" in errors_of(not_email)[path]


def test_jumps_go_forward_only() -> None:
    backwards = pricing_sequence()
    backwards["steps"][2]["branch"]["then"] = "welcome"
    forward = pricing_sequence()
    forward["steps"][2]["branch"]["then"] = "last"

    assert "goes backwards" in errors_of(backwards)["steps[2].branch.then"]
    assert parse_sequence(forward).steps[2].branch.then_steps == "last"


def test_too_many_steps_rejected() -> None:
    data = pricing_sequence()
    data["steps"] = [{"email": {"template_id": "t"}} for _ in range(201)]

    assert "at most 200 steps" in errors_of(data)["steps"]


def test_json_text_with_syntax_error() -> None:
    with pytest.raises(SequenceValidationError) as caught:
        parse_sequence('{"name": ')

    assert caught.value.errors[0].path == ""


def test_trigger_matches_pricing_page_view() -> None:
    trigger = parse_sequence(pricing_sequence()).trigger

    assert trigger.matches("page_view", {"url": "https://acme.test/pricing?plan=pro"})
    assert trigger.matches("page_view", {"url": "https://acme.test/pricing"})
    assert not trigger.matches("page_view", {"url": "https://acme.test/pricing-history"})
    assert not trigger.matches("page_view", {})
    assert not trigger.matches("form_submitted", {"url": "https://acme.test/pricing"})


def test_property_condition_operators() -> None:
    condition_cases = [
        ({"property": "plan.seats", "op": "gte", "value": 10}, {"plan": {"seats": 12}}, True),
        ({"property": "plan.seats", "op": "gte", "value": 10}, {"plan": {"seats": "12"}}, False),
        ({"property": "country", "op": "in", "value": ["DE", "AT"]}, {"country": "AT"}, True),
        ({"property": "country", "op": "not_equals", "value": "DE"}, {}, True),
        ({"property": "utm", "op": "exists"}, {"utm": "x"}, True),
        ({"property": "utm", "op": "exists", "value": False}, {"utm": "x"}, False),
        ({"property": "title", "op": "starts_with", "value": "Head"}, {"title": "Head of IT"}, True),
    ]
    for condition, values, expected in condition_cases:
        trigger = EventTrigger(type="event", event_type="x", conditions=[condition])
        assert trigger.matches("x", values) is expected, condition


@pytest.mark.timeout(60)
def test_backtracking_pattern_stays_linear() -> None:
    # A backtracking engine takes minutes on this pattern and value, and RE2 returns at once.
    trigger = EventTrigger(type="event", event_type="x", conditions=[{"property": "url", "op": "matches", "value": "(a|aa)*$"}])

    assert trigger.matches("x", {"url": "a" * 60 + "b"})


def test_lookahead_pattern_rejected() -> None:
    data = pricing_sequence()
    data["trigger"]["conditions"] = [{"property": "url", "op": "matches", "value": "(?=pricing)"}]

    errors = errors_of(data)

    assert list(errors) == ["trigger.conditions[0].value"]
    assert "RE2 syntax" in errors["trigger.conditions[0].value"]


# --- navigation -------------------------------------------------------------------------------------


def test_navigation_follows_branches() -> None:
    definition = parse_sequence(pricing_sequence())

    assert first_step(definition).id == "welcome"
    assert next_step(definition, "welcome").id == "step-2"
    assert next_step(definition, "step-2").id == "opened-welcome"
    assert next_step(definition, "opened-welcome", branch_taken=True).id == "step-4"
    assert next_step(definition, "step-4").id == "step-7"
    assert next_step(definition, "opened-welcome", branch_taken=False).id == "step-5"
    assert next_step(definition, "step-6").id == "step-7"
    assert next_step(definition, "last") is None


def test_navigation_jump_and_empty_side() -> None:
    data = pricing_sequence()
    data["steps"][2]["branch"]["then"] = "last"
    data["steps"][2]["branch"]["else"] = []
    definition = parse_sequence(data)

    assert next_step(definition, "opened-welcome", branch_taken=True).id == "last"
    assert next_step(definition, "opened-welcome", branch_taken=False).kind == "wait"


def test_navigation_errors() -> None:
    definition = parse_sequence(pricing_sequence())

    with pytest.raises(KeyError, match="no step 'ghost'"):
        next_step(definition, "ghost")
    with pytest.raises(ValueError, match="branch_taken"):
        next_step(definition, "opened-welcome")


# --- evaluation -------------------------------------------------------------------------------------


def branch_condition(condition: dict[str, Any]) -> Any:
    data = pricing_sequence()
    data["steps"][2]["branch"]["condition"] = condition
    return parse_sequence(data).steps[2].branch.condition


def test_evaluate_engagement_click_implies_open() -> None:
    opened = branch_condition({"type": "engagement", "step_id": "welcome", "action": "opened"})
    clicked = branch_condition({"type": "engagement", "step_id": "welcome", "action": "clicked"})

    assert evaluate_branch(opened, ContactFacts(engagement={"welcome": {"clicked"}}))
    assert evaluate_branch(opened, ContactFacts(engagement={"welcome": {"opened"}}))
    assert not evaluate_branch(clicked, ContactFacts(engagement={"welcome": {"opened"}}))
    assert not evaluate_branch(opened, ContactFacts())


def test_evaluate_attribute_segment_stage_score() -> None:
    facts = ContactFacts(
        attributes={"industry": "SaaS"}, segment_ids={"seg-1"}, stage=Stage.MQL, scores={"default": 55.0}
    )

    assert evaluate_branch(branch_condition({"type": "attribute", "property": "industry", "value": "SaaS"}), facts)
    assert evaluate_branch(branch_condition({"type": "segment", "segment_id": "seg-1"}), facts)
    assert not evaluate_branch(branch_condition({"type": "segment", "segment_id": "seg-1", "is_member": False}), facts)
    assert evaluate_branch(branch_condition({"type": "stage", "stages": ["mql", "sql"]}), facts)
    assert evaluate_branch(branch_condition({"type": "score", "op": "gte", "value": 50}), facts)
    assert not evaluate_branch(branch_condition({"type": "score", "model": "other", "value": 1}), facts)


def test_goal_reached_by_stage_event_and_segment() -> None:
    stage_goal = parse_sequence(pricing_sequence()).goal
    data = pricing_sequence()
    data["goal"] = {"type": "event", "event_type": "form_submitted", "conditions": [{"property": "form", "value": "demo"}]}
    event_goal = parse_sequence(data).goal
    data["goal"] = {"type": "segment_left", "segment_id": "trial"}
    segment_goal = parse_sequence(data).goal

    assert goal_reached(stage_goal, ContactFacts(stage=Stage.OPPORTUNITY))
    assert not goal_reached(stage_goal, ContactFacts(stage=Stage.MQL))
    assert not goal_reached(stage_goal, ContactFacts(stage=Stage.DISQUALIFIED))
    assert goal_reached(event_goal, ContactFacts(), event_type="form_submitted", event_properties={"form": "demo"})
    assert not goal_reached(event_goal, ContactFacts(), event_type="form_submitted", event_properties={"form": "news"})
    assert goal_reached(segment_goal, ContactFacts(segment_ids={"other"}))
    assert not goal_reached(segment_goal, ContactFacts(segment_ids={"trial"}))
    assert not goal_reached(None, ContactFacts(stage=Stage.CUSTOMER))


def test_stage_order() -> None:
    assert stage_reached("customer", "sql")
    assert stage_reached("sql", "sql")
    assert not stage_reached("lead", "mql")
    assert stage_reached("disqualified", "disqualified")
    assert not stage_reached("customer", "disqualified")
    assert not stage_reached(None, "lead")


def test_reentry_rules() -> None:
    now = datetime(2024, 6, 30, tzinfo=UTC)
    definition = parse_sequence(pricing_sequence())
    never = definition.reentry.model_copy(update={"mode": "never", "days": None})
    always = definition.reentry.model_copy(update={"mode": "always", "days": None})

    assert may_reenter(definition.reentry, now - timedelta(days=30), now)
    assert not may_reenter(definition.reentry, now - timedelta(days=29), now)
    assert not may_reenter(never, now - timedelta(days=400), now)
    assert may_reenter(always, now - timedelta(minutes=1), now)
    assert may_reenter(never, None, now)


def test_definition_model_validate_checks_references_too() -> None:
    data = copy.deepcopy(pricing_sequence())
    data["steps"][2]["branch"]["then"] = "welcome"

    with pytest.raises(ValueError, match="goes backwards"):
        SequenceDefinition.model_validate(data)
