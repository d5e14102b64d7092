import datetime as dt
from typing import Any

import pytest

from services.contacts.attributes import AttributeDefinition
from services.contacts.segments import (
    AllOf,
    AttributeCondition,
    BehaviourCondition,
    FilterValidationError,
    NotOf,
    Operator,
    dump_filter,
    parse_filter,
)
from services.contacts.segments.validation import load_filter

ATTRIBUTES = {
    "industry": AttributeDefinition(name="industry", type="enum", label="Industry", allowed_values=("SaaS", "Retail")),
    "job_title": AttributeDefinition(name="job_title", type="string", label="Job title"),
    "employees": AttributeDefinition(name="employees", type="number", label="Employees"),
    "trial": AttributeDefinition(name="trial", type="boolean", label="On trial"),
    "renewal": AttributeDefinition(name="renewal", type="date", label="Renewal"),
    "interests": AttributeDefinition(name="interests", type="string_list", label="Interests"),
}
PRICING_VISITS = {
    "event": "page_view",
    "where": [{"property": "url", "op": "contains", "value": "/pricing"}],
    "within_days": 14,
}
SAAS_AND_PRICING = {"all": [{"field": "company.industry", "op": "eq", "value": "SaaS"}, PRICING_VISITS]}


def issues_of(data: Any, **options: Any) -> dict[str, str]:
    with pytest.raises(FilterValidationError) as caught:
        parse_filter(data, attributes=ATTRIBUTES, **options)

    return {issue.path: issue.message for issue in caught.value.issues}


class TestValidFilters:
    def test_saas_and_pricing_example(self) -> None:
        node = parse_filter(SAAS_AND_PRICING, attributes=ATTRIBUTES)

        assert isinstance(node, AllOf)
        condition, behaviour = node.all
        assert isinstance(condition, AttributeCondition)
        assert condition.op is Operator.EQ
        assert isinstance(behaviour, BehaviourCondition)
        assert behaviour.within_days == 14
        assert behaviour.minimum == 1

    def test_round_trips_through_json(self) -> None:
        data = {
            "any": [
                SAAS_AND_PRICING,
                {"not": {"field": "consent", "op": "in", "value": ["unsubscribed", "bounced"]}},
                {
                    "event": "email_opened",
                    "at_least": 3,
                    "at_most": 10,
                    "between": {"start": "2024-01-01T00:00:00Z", "end": "2024-02-01T00:00:00Z"},
                },
            ]
        }

        dumped = dump_filter(parse_filter(data, attributes=ATTRIBUTES))

        assert dumped["any"][0] == SAAS_AND_PRICING
        assert dumped["any"][1] == data["any"][1]
        assert dumped["any"][2]["between"] == {"start": "2024-01-01T00:00:00Z", "end": "2024-02-01T00:00:00Z"}
        assert parse_filter(dumped, attributes=ATTRIBUTES) == parse_filter(data, attributes=ATTRIBUTES)

    @pytest.mark.parametrize(
        "condition",
        [
            {"field": "email", "op": "eq", "value": "Ann@Example.com"},
            {"field": "first_name", "op": "starts_with", "value": "An"},
            {"field": "last_name", "op": "exists", "value": False},
            {"field": "timezone", "op": "in", "value": ["Europe/Berlin", "Europe/Paris"]},
            {"field": "created_at", "op": "gte", "value": "2024-05-01T10:00:00+02:00"},
            {"field": "updated_at", "op": "between", "value": ["2024-01-01T00:00:00Z", "2024-06-01T00:00:00Z"]},
            {"field": "company.domain", "op": "neq", "value": "example.com"},
            {"field": "company.name", "op": "contains", "value": "Acme"},
            {"field": "company.size", "op": "between", "value": [50, 200]},
            {"field": "company.industry", "op": "eq", "value": "SaaS"},
            {"field": "consent", "op": "eq", "value": "subscribed"},
            {"field": "consent.newsletter", "op": "neq", "value": "unsubscribed"},
            {"field": "stage", "op": "gte", "value": "MQL"},
            {"field": "stage", "op": "eq", "value": "disqualified"},
            {"field": "stage", "op": "between", "value": ["lead", "sql"]},
            {"field": "score.default", "op": "gt", "value": 50},
            {"field": "score.default.fit", "op": "lte", "value": 20.5},
            {"field": "score.default.engagement", "op": "exists", "value": True},
            {"field": "attributes.industry", "op": "in", "value": ["saas", "Retail"]},
            {"field": "attributes.job_title", "op": "contains", "value": "director"},
            {"field": "attributes.employees", "op": "lt", "value": 10},
            {"field": "attributes.trial", "op": "eq", "value": True},
            {"field": "attributes.renewal", "op": "between", "value": ["2024-01-01", "2024-12-31"]},
            {"field": "attributes.interests", "op": "contains", "value": "api"},
            {"field": "attributes.interests", "op": "in", "value": ["api", "pricing"]},
        ],
    )
    def test_attribute_conditions_accepted(self, condition: dict[str, Any]) -> None:
        node = parse_filter(condition, attributes=ATTRIBUTES, score_models={"default"})

        assert isinstance(node, AttributeCondition)

    @pytest.mark.parametrize(
        "behaviour",
        [
            {"event": "form_submitted"},
            {"event": "content_downloaded", "at_least": 2, "within_days": 30},
            {"event": "page_view", "at_most": 0, "within_days": 7},
            {"event": "email_clicked", "where": [{"property": "link.position", "op": "lte", "value": 3}]},
            {"event": "page_view", "where": [{"property": "url", "op": "starts_with", "value": "https://example.com/docs"}]},
            {"event": "custom.trial_started", "where": [{"property": "plan", "op": "in", "value": ["pro", "team"]}]},
            {"event": "page_view", "where": [{"property": "utm_source", "op": "exists", "value": True}]},
            {"event": "purchase", "where": [{"property": "amount", "op": "between", "value": [10, 100]}]},
        ],
    )
    def test_behaviour_conditions_accepted(self, behaviour: dict[str, Any]) -> None:
        assert isinstance(parse_filter(behaviour), BehaviourCondition)

    def test_at_most_zero_means_never(self) -> None:
        node = parse_filter({"event": "page_view", "at_most": 0})

        assert node.minimum == 0
        assert node.at_most == 0

    def test_not_node(self) -> None:
        node = parse_filter({"not": PRICING_VISITS})

        assert isinstance(node, NotOf)
        assert isinstance(node.negated, BehaviourCondition)

    def test_attributes_unchecked_without_definitions(self) -> None:
        node = parse_filter({"field": "attributes.anything", "op": "eq", "value": 3})

        assert isinstance(node, AttributeCondition)

    def test_between_window_is_aware(self) -> None:
        node = parse_filter({"event": "x", "between": {"start": "2024-01-01T00:00:00+01:00", "end": "2024-01-02T00:00:00Z"}})

        assert node.between.start == dt.datetime(2023, 12, 31, 23, tzinfo=dt.UTC)


class TestStructureErrors:
    def test_window_days_path(self) -> None:
        issues = issues_of({"all": [SAAS_AND_PRICING["all"][0], {**PRICING_VISITS, "within_days": 0}]})

        assert list(issues) == ["filter.all[1].within_days"]
        assert "greater than or equal to 1" in issues["filter.all[1].within_days"]

    def test_window_too_long(self) -> None:
        assert "filter.within_days" in issues_of({"event": "page_view", "within_days": 3651})

    def test_nested_paths(self) -> None:
        data = {"any": [{"all": [{"not": {"field": "stage", "op": "like", "value": "x"}}]}]}

        assert list(issues_of(data)) == ["filter.any[0].all[0].not.op"]

    def test_where_path(self) -> None:
        data = {"all": [{"event": "page_view", "where": [{"property": "url", "op": "eq", "value": "/"}, {"property": "url"}]}]}

        assert issues_of(data) == {"filter.all[0].where[1].op": "required"}

    def test_unknown_key(self) -> None:
        assert issues_of({"all": [{"field": "email", "op": "eq", "value": "a@b.co", "case": "ignore"}]}) == {
            "filter.all[0].case": "unknown key"
        }

    def test_two_node_keys(self) -> None:
        assert issues_of({"all": [PRICING_VISITS], "any": [PRICING_VISITS]}) == {"filter.any": "unknown key"}

    @pytest.mark.parametrize("node", [5, "all", [], {}, {"op": "eq"}])
    def test_not_a_node(self, node: object) -> None:
        issues = issues_of({"all": [PRICING_VISITS, node]})

        assert issues == {"filter.all[1]": "expected an object with one of the keys all, any, not, field or event"}

    def test_empty_group(self) -> None:
        assert "filter.any" in issues_of({"any": []})

    def test_unknown_field(self) -> None:
        issues = issues_of({"field": "company.revenue", "op": "gt", "value": 1})

        assert issues["filter.field"].startswith("unknown field; use email")

    def test_bad_event_type(self) -> None:
        assert "event type" in issues_of({"event": "Page View"})["filter.event"]

    def test_window_and_range_together(self) -> None:
        data = {"event": "x", "within_days": 3, "between": {"start": "2024-01-01T00:00:00Z", "end": "2024-01-02T00:00:00Z"}}

        assert issues_of(data) == {"filter": "use within_days or between, not both"}

    def test_counts_out_of_order(self) -> None:
        assert issues_of({"event": "x", "at_least": 3, "at_most": 1}) == {
            "filter": "at_least (3) is greater than at_most (1), so nothing can match"
        }

    def test_range_end_before_start(self) -> None:
        data = {"event": "x", "between": {"start": "2024-02-01T00:00:00Z", "end": "2024-01-01T00:00:00Z"}}

        assert issues_of(data) == {"filter.between": "start must be before end"}

    def test_naive_range_rejected(self) -> None:
        data = {"event": "x", "between": {"start": "2024-01-01T00:00:00", "end": "2024-01-02T00:00:00Z"}}

        assert list(issues_of(data)) == ["filter.between.start"]

    def test_negative_count(self) -> None:
        assert "filter.any[0].at_least" in issues_of({"any": [{"event": "x", "at_least": -1}]})

    def test_custom_root(self) -> None:
        with pytest.raises(FilterValidationError) as caught:
            parse_filter({"event": "x", "within_days": 0}, root="segment.filter")

        assert caught.value.issues[0].path == "segment.filter.within_days"

    def test_every_issue_reported(self) -> None:
        data = {"all": [{"event": "x", "within_days": 0}, {"field": "nope", "op": "eq"}, {"event": "y", "at_most": -2}]}

        assert set(issues_of(data)) == {"filter.all[0].within_days", "filter.all[1].field", "filter.all[2].at_most"}

    def test_value_issues_reported_beside_shape_issues(self) -> None:
        data = {
            "all": [
                {"field": "stage", "op": "gte", "value": "nope"},
                {"event": "x", "within_days": 0},
                {"any": [{"field": "consent", "op": "gt", "value": "subscribed"}, {"field": "nope", "op": "eq"}]},
            ]
        }

        assert set(issues_of(data)) == {
            "filter.all[0].value",
            "filter.all[1].within_days",
            "filter.all[2].any[0].op",
            "filter.all[2].any[1].field",
        }

    def test_message_lists_path(self) -> None:
        with pytest.raises(FilterValidationError, match=r"filter\.all\[0\]\.within_days: "):
            parse_filter({"all": [{"event": "x", "within_days": 0}]})


class TestValueErrors:
    @pytest.mark.parametrize(
        ("condition", "path", "fragment"),
        [
            ({"field": "attributes.shoe", "op": "eq", "value": 1}, "filter.field", "no attribute named 'shoe'"),
            ({"field": "score.other", "op": "gt", "value": 1}, "filter.field", "no score model named 'other'"),
            ({"field": "attributes.trial", "op": "gt", "value": True}, "filter.op", "gt does not apply to the boolean field"),
            ({"field": "attributes.interests", "op": "eq", "value": "api"}, "filter.op", "the list field"),
            ({"field": "created_at", "op": "eq", "value": "2024-01-01T00:00:00Z"}, "filter.op", "the datetime field"),
            ({"field": "stage", "op": "exists", "value": True}, "filter.op", "the stage field"),
            ({"field": "consent", "op": "contains", "value": "sub"}, "filter.op", "the enum field"),
            ({"field": "company.size", "op": "gt", "value": "50"}, "filter.value", "expected a number"),
            ({"field": "company.size", "op": "eq", "value": True}, "filter.value", "expected a number"),
            ({"field": "attributes.trial", "op": "eq", "value": "yes"}, "filter.value", "expected true or false"),
            ({"field": "attributes.renewal", "op": "gt", "value": "31/02/2024"}, "filter.value", "YYYY-MM-DD"),
            ({"field": "attributes.renewal", "op": "gt", "value": "2024-02-31"}, "filter.value", "not a calendar date"),
            ({"field": "created_at", "op": "gt", "value": "2024-01-01T00:00:00"}, "filter.value", "no UTC offset"),
            ({"field": "created_at", "op": "gt", "value": "yesterday"}, "filter.value", "not an ISO 8601"),
            ({"field": "attributes.industry", "op": "eq", "value": "Mining"}, "filter.value", "'SaaS', 'Retail'"),
            ({"field": "consent", "op": "eq", "value": "maybe"}, "filter.value", "'subscribed', 'unsubscribed'"),
            ({"field": "stage", "op": "eq", "value": "hot"}, "filter.value", "'hot' is not a stage"),
            ({"field": "stage", "op": "gt", "value": "disqualified"}, "filter.value", "no place in the funnel order"),
            ({"field": "email", "op": "eq", "value": ""}, "filter.value", "non-empty string"),
            ({"field": "email", "op": "exists"}, "filter.value", "true or false"),
            ({"field": "email", "op": "in", "value": "a@example.com"}, "filter.value", "list of 1 to 500"),
            ({"field": "email", "op": "in", "value": []}, "filter.value", "list of 1 to 500"),
            ({"field": "email", "op": "in", "value": ["a@example.com", 3]}, "filter.value[1]", "non-empty string"),
            ({"field": "company.size", "op": "between", "value": [10]}, "filter.value", "[low, high]"),
            ({"field": "company.size", "op": "between", "value": [200, 10]}, "filter.value", "above the high end"),
            ({"field": "stage", "op": "between", "value": ["sql", "lead"]}, "filter.value", "above the high end"),
            ({"field": "company.size", "op": "between", "value": [1, "x"]}, "filter.value[1]", "expected a number"),
            ({"field": "attributes.employees", "op": "gt", "value": 10**29}, "filter.value", "at most 1e+15"),
            ({"field": "company.size", "op": "lt", "value": -1e16}, "filter.value", "at most 1e+15"),
            ({"field": "company.size", "op": "in", "value": [1, 10**20]}, "filter.value[1]", "at most 1e+15"),
            ({"field": "attributes.x", "op": "eq", "value": 10**20}, "filter.field", "no attribute named 'x'"),
            ({"field": "created_at", "op": "gt", "value": "0001-01-01T00:00:00+01:00"}, "filter.value", "years 1 to 9999"),
            ({"field": "updated_at", "op": "lt", "value": "9999-12-31T23:00:00-05:00"}, "filter.value", "years 1 to 9999"),
        ],
    )
    def test_value_problem_at_path(self, condition: dict[str, Any], path: str, fragment: str) -> None:
        issues = issues_of(condition, score_models={"default"})

        assert list(issues) == [path]
        assert fragment in issues[path]

    @pytest.mark.parametrize(
        ("where", "path", "fragment"),
        [
            ({"property": "amount", "op": "gt", "value": "10"}, "filter.where[0].value", "expected a number"),
            ({"property": "url", "op": "contains", "value": 5}, "filter.where[0].value", "non-empty string"),
            ({"property": "url", "op": "eq", "value": {"a": 1}}, "filter.where[0].value", "a string, a number or true/false"),
            ({"property": "url path", "op": "eq", "value": "/"}, "filter.where[0].property", "property path"),
            ({"property": "amount", "op": "gt", "value": 10**29}, "filter.where[0].value", "at most 1e+15"),
            ({"property": "amount", "op": "eq", "value": 10**20}, "filter.where[0].value", "at most 1e+15"),
        ],
    )
    def test_property_problem_at_path(self, where: dict[str, Any], path: str, fragment: str) -> None:
        issues = issues_of({"event": "page_view", "where": [where]})

        assert list(issues) == [path]
        assert fragment in issues[path]

    def test_number_at_cap_accepted(self) -> None:
        node = parse_filter({"field": "company.size", "op": "between", "value": [-(10**15), 1e15]})

        assert isinstance(node, AttributeCondition)

    def test_range_start_out_of_range(self) -> None:
        window = {"start": "0001-01-01T00:00:00+01:00", "end": "2024-01-01T00:00:00Z"}

        issues = issues_of({"event": "page_view", "between": window})

        assert list(issues) == ["filter.between.start"]
        assert "years 1 to 9999" in issues["filter.between.start"]

    def test_stored_filter_loads_without_value_checks(self) -> None:
        stored = {"field": "company.size", "op": "lt", "value": 10**16}

        node = load_filter(stored)

        assert isinstance(node, AttributeCondition)
        assert node.value == 10**16

    def test_attribute_value_shape_checked_without_definitions(self) -> None:
        with pytest.raises(FilterValidationError) as caught:
            parse_filter({"field": "attributes.x", "op": "in", "value": []})

        assert caught.value.issues[0].path == "filter.value"


class TestLimits:
    def test_nesting_depth(self) -> None:
        node: dict[str, Any] = PRICING_VISITS
        for _ in range(11):
            node = {"not": node}

        assert "nested 11 levels deep" in issues_of(node)["filter"]

    def test_hostile_nesting_rejected_before_parsing(self) -> None:
        node: dict[str, Any] = PRICING_VISITS
        for _ in range(5000):
            node = {"not": node}

        assert "more than 64 levels" in issues_of(node)["filter"]

    def test_condition_count(self) -> None:
        groups = [{"any": [PRICING_VISITS] * 100}, {"any": [PRICING_VISITS] * 100}, {"any": [PRICING_VISITS]}]

        assert issues_of({"all": groups}) == {"filter": "the filter has 201 conditions, more than 200"}

    def test_children_per_group(self) -> None:
        assert "filter.all" in issues_of({"all": [PRICING_VISITS] * 101})
