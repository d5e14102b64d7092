import json
from typing import Any

import pytest
import yaml

from services.scoring.rules import (
    EngagementRule,
    FitRule,
    PatternRule,
    RuleSetInvalid,
    load_rule_set,
    parse_rule_set,
    parse_rule_set_json,
    parse_rule_set_yaml,
)
from tests.scoring.rules.builders import reference_document, single_rule_document

PRICING = {
    "name": "pricing-visit",
    "kind": "engagement",
    "event": "page_view",
    "where": {"field": "properties.url", "op": "matches", "value": "/pricing"},
    "points": 15,
}


def errors_of(document: Any) -> list[dict[str, str | None]]:
    with pytest.raises(RuleSetInvalid) as raised:
        parse_rule_set(document)
    return raised.value.as_dicts()


def with_changes(rule: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return single_rule_document({**rule, **changes})


class TestValidRuleSets:
    def test_reference_rule_set_parses_every_kind(self) -> None:
        rule_set = parse_rule_set(reference_document())

        kinds = {type(rule) for rule in rule_set.rules}
        assert kinds == {FitRule, EngagementRule, PatternRule}
        assert rule_set.mql_threshold == 50
        assert rule_set.rule("pricing-visit") is not None
        assert rule_set.rule("missing") is None

    def test_json_and_yaml_give_same_model(self) -> None:
        document = reference_document()

        from_json = parse_rule_set_json(json.dumps(document))
        from_yaml = parse_rule_set_yaml(yaml.safe_dump(document))

        assert from_json == from_yaml == parse_rule_set(document)

    def test_load_rule_set_compiles_yaml(self) -> None:
        text = yaml.safe_dump(reference_document())

        with load_rule_set(text, format="yaml") as compiled:
            assert compiled.mql_threshold == 50
            assert compiled.history_window.days == 7

    def test_load_rule_set_rejects_unknown_format(self) -> None:
        with pytest.raises(ValueError, match="unknown rule-set format 'toml'"):
            load_rule_set("x = 1", format="toml")


class TestRuleErrors:
    @pytest.mark.parametrize(
        ("changes", "field", "message"),
        [
            ({"points": 0}, "points", "points must not be 0"),
            ({"points": 1001}, "points", "less than or equal to 1000"),
            ({"points": "15"}, "points", "valid integer"),
            ({"points": 2.5}, "points", "valid integer"),
            ({"cap": {"max_points": -5}}, "cap.max_points", "greater than 0"),
            ({"cap": {"max_points": 0}}, "cap.max_points", "greater than 0"),
            ({"cap": {"max_points": 10, "period": "fortnight"}}, "cap.period", "unknown value 'fortnight'"),
            ({"decay": {"type": "slow"}}, "decay.type", "unknown type 'slow'"),
            (
                {"decay": {"type": "half_life", "half_life_days": -1}},
                "decay.half_life_days",
                "greater than 0",
            ),
            (
                {"decay": {"type": "linear", "points_per_day": 1}},
                "decay",
                "linear decay applies to the whole",
            ),
            ({"event": ""}, "event", "should match pattern"),
            ({"pionts": 3}, "pionts", "unknown field"),
            (
                {"where": {"field": "properties.url", "op": "like", "value": "x"}},
                "where.op",
                "unknown operator 'like'",
            ),
            (
                {"where": {"field": "properties.url", "op": "matches", "value": "(/pricing"}},
                "where.value",
                "invalid regular expression",
            ),
            # RE2 has no lookaround or backreferences, and it spells Python's `\Z` as `\z`.
            (
                {"where": {"field": "properties.url", "op": "matches", "value": "/(?=pricing)"}},
                "where.value",
                "Patterns use RE2 syntax",
            ),
            (
                {"where": {"field": "properties.url", "op": "matches", "value": r"/(\w+)/\1"}},
                "where.value",
                "Patterns use RE2 syntax",
            ),
            (
                {"where": {"field": "properties.url", "op": "matches", "value": r"/pricing\Z"}},
                "where.value",
                "instead of \\Z",
            ),
            (
                {"where": {"field": "properties.url", "op": "matches", "value": ".{1000}z"}},
                "where.value",
                "compiles to 8005 instructions, more than the maximum of 2000",
            ),
            (
                {"where": {"field": "properties.url", "op": "matches", "value": "x" * 501}},
                "where.value",
                "longer than 500 characters",
            ),
            (
                {"where": {"field": "properties..url", "op": "eq", "value": "x"}},
                "where.field",
                "should match pattern",
            ),
            ({"where": {"field": "properties.url", "op": "contains"}}, "where.value", "non-empty string"),
            (
                {"where": {"field": "properties.url", "op": "exists", "value": "x"}},
                "where.value",
                "exists takes no value",
            ),
            ({"where": {"all": []}}, "where.all", "at least 1 item"),
            (
                {"where": {"any": [{"field": "a", "op": "gt", "value": "ten"}]}},
                "where.any[0].value",
                "gt needs a number",
            ),
            ({"where": "url is pricing"}, "where", "expected a condition"),
        ],
    )
    def test_engagement_rule_error_names_rule_and_field(
        self, changes: dict[str, Any], field: str, message: str
    ) -> None:
        errors = errors_of(with_changes(PRICING, **changes))

        assert len(errors) == 1, errors
        assert errors[0]["rule"] == "pricing-visit"
        assert errors[0]["field"] == field
        assert message in str(errors[0]["message"])

    @pytest.mark.parametrize(
        ("when", "field", "message"),
        [
            ({"field": "company.size", "op": "between", "value": [500, 50]}, "when.value", "low <= high"),
            ({"field": "company.size", "op": "between", "value": [50]}, "when.value", "[low, high]"),
            ({"field": "company.size", "op": "gte", "value": True}, "when.value", "needs a number"),
            ({"field": "company.size", "op": "gte", "value": 1e16}, "when.value", "out of range"),
            ({"field": "company.size", "op": "gte", "value": 0.00001}, "when.value", "4 decimal places"),
            ({"field": "company.industry", "op": "in", "value": []}, "when.value", "non-empty list"),
            (
                {"field": "company.industry", "op": "in", "value": ["SaaS", 5]},
                "when.value",
                "only strings or only numbers",
            ),
            ({"field": "company.industry", "op": "eq", "value": ["SaaS"]}, "when.value", "needs a number"),
            (
                {"all": [{"field": "a", "op": "eq", "value": 1}, {"field": "b"}]},
                "when.all[1].op",
                "missing required field",
            ),
        ],
    )
    def test_fit_condition_error_names_path(self, when: dict[str, Any], field: str, message: str) -> None:
        rule = {"name": "size-fit", "kind": "fit", "points": 5, "when": when}

        errors = errors_of(single_rule_document(rule))

        assert [(error["rule"], error["field"]) for error in errors] == [("size-fit", field)]
        assert message in str(errors[0]["message"])

    def test_fit_rule_rejects_cap_and_decay(self) -> None:
        rule = {
            "name": "vp-title",
            "kind": "fit",
            "points": 10,
            "when": {"field": "attributes.job_title", "op": "contains", "value": "VP"},
            "cap": {"max_points": 10},
            "decay": {"type": "none"},
        }

        errors = errors_of(single_rule_document(rule))

        assert [(error["rule"], error["field"]) for error in errors] == [
            ("vp-title", "cap"),
            ("vp-title", "decay"),
        ]
        assert "fit rules count once" in str(errors[0]["message"])

    def test_pattern_rule_errors(self) -> None:
        rule = {
            "name": "click-then-pricing",
            "kind": "pattern",
            "points": 20,
            "within_days": 0,
            "steps": [{"event": "email_clicked"}],
        }

        errors = errors_of(single_rule_document(rule))

        assert {(error["rule"], error["field"]) for error in errors} == {
            ("click-then-pricing", "steps"),
            ("click-then-pricing", "within_days"),
        }

    def test_pattern_step_error_names_step(self) -> None:
        rule = {
            "name": "click-then-pricing",
            "kind": "pattern",
            "points": 20,
            "within_days": 7,
            "steps": [
                {"event": "email_clicked"},
                {"event": "page_view", "where": {"field": "properties.url", "op": "matches", "value": "["}},
            ],
        }

        errors = errors_of(single_rule_document(rule))

        assert [(error["rule"], error["field"]) for error in errors] == [
            ("click-then-pricing", "steps[1].where.value")
        ]

    def test_duplicate_rule_names_rejected(self) -> None:
        document = single_rule_document(PRICING)
        document["rules"].append({**PRICING, "points": 5})

        errors = errors_of(document)

        assert errors == [
            {
                "rule": "pricing-visit",
                "field": "name",
                "message": "duplicate rule name: each rule needs a unique name",
            }
        ]

    def test_duplicates_reported_with_other_errors(self) -> None:
        document = single_rule_document(PRICING)
        document["rules"].append({**PRICING, "points": 0})

        errors = errors_of(document)

        assert {(error["rule"], error["field"]) for error in errors} == {
            ("pricing-visit", "points"),
            ("pricing-visit", "name"),
        }

    def test_rule_without_name_labelled_by_index(self) -> None:
        nameless = {key: value for key, value in PRICING.items() if key != "name"}
        document = single_rule_document(PRICING)
        document["rules"].append(nameless)

        errors = errors_of(document)

        assert errors == [{"rule": "rules[1]", "field": "name", "message": "missing required field"}]

    @pytest.mark.parametrize(
        ("rule", "field", "message"),
        [
            ({"name": "x", "points": 5}, "kind", "missing kind"),
            ({"name": "x", "kind": "behaviour", "points": 5}, "kind", "unknown kind 'behaviour'"),
            (
                {"name": "bad name!", "kind": "fit", "points": 5, "when": {"field": "a", "op": "exists"}},
                "name",
                "should match pattern",
            ),
        ],
    )
    def test_rule_kind_and_name_errors(self, rule: dict[str, Any], field: str, message: str) -> None:
        errors = errors_of(single_rule_document(rule))

        assert len(errors) == 1
        assert errors[0]["field"] == field
        assert message in str(errors[0]["message"])


class TestRuleSetErrors:
    @pytest.mark.parametrize(
        ("changes", "field", "message"),
        [
            ({"mql_threshold": 0}, "mql_threshold", "greater than 0"),
            ({"mql_threshold": -5}, "mql_threshold", "greater than 0"),
            ({"mql_threshold": True}, "mql_threshold", "expected a number"),
            ({"rules": []}, "rules", "at least 1 item"),
            ({"decay": {"type": "linear", "points_per_day": 0}}, "decay.points_per_day", "greater than 0"),
            ({"threshold": 5}, "threshold", "unknown field"),
        ],
    )
    def test_rule_set_field_error_has_no_rule(
        self, changes: dict[str, Any], field: str, message: str
    ) -> None:
        errors = errors_of(reference_document(**changes))

        assert [(error["rule"], error["field"]) for error in errors] == [(None, field)]
        assert message in str(errors[0]["message"])

    def test_every_error_reported_at_once(self) -> None:
        document = reference_document(mql_threshold=-1)
        document["rules"][0]["points"] = 0
        document["rules"][6]["cap"] = {"max_points": -3}

        errors = errors_of(document)

        assert {(error["rule"], error["field"]) for error in errors} == {
            (None, "mql_threshold"),
            ("vp-title", "points"),
            ("pricing-visit", "cap.max_points"),
        }

    def test_document_must_be_object(self) -> None:
        assert errors_of(["rules"]) == [
            {
                "rule": None,
                "field": "document",
                "message": "a rule set must be an object with mql_threshold and rules",
            }
        ]

    def test_invalid_json_reports_position(self) -> None:
        with pytest.raises(RuleSetInvalid) as raised:
            parse_rule_set_json('{"mql_threshold": 5,\n "rules": [}')

        error = raised.value.errors[0]
        assert error.field == "document"
        assert error.message.startswith("invalid JSON at line 2, column 12")

    def test_invalid_yaml_reports_position(self) -> None:
        with pytest.raises(RuleSetInvalid) as raised:
            parse_rule_set_yaml("mql_threshold: 5\nrules: [a\nb")

        error = raised.value.errors[0]
        assert error.field == "document"
        assert error.message.startswith("invalid YAML at line 3")

    def test_yaml_objects_are_not_constructed(self) -> None:
        with pytest.raises(RuleSetInvalid) as raised:
            parse_rule_set_yaml("!!python/object/apply:os.system ['true']")

        assert raised.value.errors[0].message.startswith("invalid YAML")

    def test_exception_message_summarises_errors(self) -> None:
        with pytest.raises(RuleSetInvalid) as raised:
            parse_rule_set(with_changes(PRICING, points=0))

        assert "rule 'pricing-visit', field 'points'" in str(raised.value)


class TestEngineLimits:
    def test_too_many_distinct_fields_rejected(self) -> None:
        rules = [
            {
                "name": f"fit-{index}",
                "kind": "fit",
                "points": 1,
                "when": {"field": f"attributes.a{index}", "op": "eq", "value": 1},
            }
            for index in range(201)
        ]

        with pytest.raises(RuleSetInvalid) as raised:
            load_rule_set({"mql_threshold": 5, "rules": rules})

        error = raised.value.errors[0]
        assert (error.rule, error.field) == (None, "rules")
        assert "201 distinct contact fields" in error.message
