from typing import Any

import pytest

from services.scoring.rules import match_event, match_fit
from tests.scoring.rules.builders import CompileDocument, event, single_rule_document


def fit_rule(when: dict[str, Any]) -> dict[str, Any]:
    return single_rule_document({"name": "fit-test", "kind": "fit", "points": 5, "when": when})


def fit_matches(compile_document: CompileDocument, when: dict[str, Any], contact: dict[str, Any]) -> bool:
    compiled = compile_document(fit_rule(when))
    return [match.rule for match in match_fit(compiled, contact=contact)] == ["fit-test"]


SIZE = "company.size"


class TestOperators:
    @pytest.mark.parametrize(
        ("op", "value", "size", "expected"),
        [
            ("eq", 50, 50, True),
            ("eq", 50, 50.0, True),  # an integral float equals the integer
            ("eq", 50, 51, False),
            ("ne", 50, 51, True),
            ("ne", 50, 50, False),
            ("lt", 50, 49.9999, True),  # 4 decimal places survive
            ("lt", 50, 50, False),
            ("lte", 50, 50, True),
            ("gt", 50, 50, False),
            ("gt", 50, 50.5, True),
            ("gte", 50, 50, True),
            ("gte", 50, -50, False),
            ("between", [50, 500], 50, True),  # inclusive low end
            ("between", [50, 500], 500, True),  # inclusive high end
            ("between", [50, 500], 49, False),
            ("between", [50, 500], 501, False),
            ("between", [0.5, 1.25], 1.25, True),
            ("in", [10, 50], 50, True),
            ("in", [10, 50], 20, False),
            ("not_in", [10, 50], 20, True),
            ("not_in", [10, 50], 10, False),
        ],
    )
    def test_numeric_operator(
        self, compile_document: CompileDocument, op: str, value: Any, size: Any, expected: bool
    ) -> None:
        when = {"field": SIZE, "op": op, "value": value}

        assert fit_matches(compile_document, when, {"company": {"size": size}}) is expected

    @pytest.mark.parametrize(
        ("op", "value", "title", "expected"),
        [
            ("eq", "vp sales", "VP Sales", True),  # case-insensitive by default
            ("eq", "VP", "VP Sales", False),
            ("ne", "VP Sales", "CEO", True),
            ("in", ["CEO", "CTO"], "cto", True),
            ("in", ["CEO", "CTO"], "VP", False),
            ("not_in", ["CEO", "CTO"], "VP", True),
            ("contains", "VP", "Senior vp, Sales", True),
            ("contains", "VP", "Developer", False),
            ("not_contains", "intern", "VP Sales", True),
            ("not_contains", "intern", "Sales Intern", False),
            ("starts_with", "head of", "Head of Growth", True),
            ("starts_with", "head of", "Deputy Head of Growth", False),
            ("ends_with", "officer", "Chief Marketing Officer", True),
            ("ends_with", "officer", "Officer of Sales", False),
            ("matches", r"^(vp|vice president)\b", "Vice President, EMEA", True),
            ("matches", r"^(vp|vice president)\b", "AVP Sales", False),
            ("contains", "É", "directeur général étranger", True),  # case folding beyond ASCII
        ],
    )
    def test_text_operator(
        self, compile_document: CompileDocument, op: str, value: Any, title: str, expected: bool
    ) -> None:
        when = {"field": "attributes.job_title", "op": op, "value": value}
        contact = {"attributes": {"job_title": title}}

        assert fit_matches(compile_document, when, contact) is expected

    @pytest.mark.parametrize(
        ("op", "value", "title", "expected"),
        [
            ("eq", "VP Sales", "vp sales", False),
            ("eq", "VP Sales", "VP Sales", True),
            ("contains", "VP", "Senior vp", False),
            ("matches", "VP", "vp", False),
            ("in", ["CEO"], "ceo", False),
        ],
    )
    def test_case_sensitive_text(
        self, compile_document: CompileDocument, op: str, value: Any, title: str, expected: bool
    ) -> None:
        when = {"field": "attributes.job_title", "op": op, "value": value, "case_sensitive": True}
        contact = {"attributes": {"job_title": title}}

        assert fit_matches(compile_document, when, contact) is expected

    def test_boolean_equality(self, compile_document: CompileDocument) -> None:
        when = {"field": "attributes.decision_maker", "op": "eq", "value": True}

        assert fit_matches(compile_document, when, {"attributes": {"decision_maker": True}})
        assert not fit_matches(compile_document, when, {"attributes": {"decision_maker": False}})
        assert not fit_matches(compile_document, when, {"attributes": {"decision_maker": 1}})

    @pytest.mark.parametrize(
        ("contact", "expected"),
        [
            ({"attributes": {"phone": "+44"}}, True),
            ({"attributes": {"phone": ""}}, True),
            ({"attributes": {"phone": None}}, False),
            ({"attributes": {}}, False),
            ({}, False),
        ],
    )
    def test_exists(self, compile_document: CompileDocument, contact: dict[str, Any], expected: bool) -> None:
        exists = {"field": "attributes.phone", "op": "exists"}
        not_exists = {"field": "attributes.phone", "op": "not_exists"}

        assert fit_matches(compile_document, exists, contact) is expected
        assert fit_matches(compile_document, not_exists, contact) is not expected


class TestMissingAndMistypedFields:
    @pytest.mark.parametrize("op", ["eq", "ne", "lt", "gte", "in", "not_in"])
    @pytest.mark.parametrize(
        "company",
        [
            {},  # missing
            {"size": None},
            {"size": "200"},  # a numeric string is not a number
            {"size": True},
            {"size": [200]},
            {"size": {"value": 200}},
            {"size": float("nan")},
            {"size": 2**70},  # beyond 1e15, where doubles lose integer precision
            {"size": 1e16},  # JSON writes 1e+16, which durable_rules cannot parse
        ],
    )
    def test_numeric_condition_false(
        self, compile_document: CompileDocument, op: str, company: dict[str, Any]
    ) -> None:
        value = [100, 200] if op in ("in", "not_in") else 100

        assert not fit_matches(
            compile_document, {"field": SIZE, "op": op, "value": value}, {"company": company}
        )

    @pytest.mark.parametrize("op", ["contains", "not_contains", "starts_with", "matches", "eq", "ne"])
    def test_text_condition_false_on_number(self, compile_document: CompileDocument, op: str) -> None:
        when = {"field": "attributes.job_title", "op": op, "value": "12"}

        assert not fit_matches(compile_document, when, {"attributes": {"job_title": 12}})

    def test_path_through_non_object_is_missing(self, compile_document: CompileDocument) -> None:
        when = {"field": "company.size", "op": "gt", "value": 1}

        assert not fit_matches(compile_document, when, {"company": "Acme"})

    def test_tiny_decimal_rounds_to_four_places(self, compile_document: CompileDocument) -> None:
        when = {"field": SIZE, "op": "gt", "value": 0}

        assert fit_matches(compile_document, when, {"company": {"size": 0.0001}})
        assert not fit_matches(compile_document, when, {"company": {"size": 0.00001}})

    def test_long_match_subject_is_cut(self, compile_document: CompileDocument) -> None:
        when = {"field": "attributes.note", "op": "matches", "value": "needle"}

        assert fit_matches(compile_document, when, {"attributes": {"note": "x" * 100 + "needle"}})
        assert not fit_matches(compile_document, when, {"attributes": {"note": "x" * 5000 + "needle"}})


class TestRegularExpressions:
    # Python's backtracking `re` needs exponential or cubic time for these pairs, far longer than
    # the timeout, while RE2 needs linear time. The timeout only turns a regression into a failure
    # instead of a hung run.
    @pytest.mark.timeout(60)
    @pytest.mark.parametrize(
        ("pattern", "url", "expected"),
        [
            pytest.param("(a|aa)*$", "a" * 4000 + "b", True, id="(a|aa)*$"),  # the empty string at the end matches
            pytest.param("(a|aa)*c", "a" * 4000 + "b", False, id="(a|aa)*c"),
            pytest.param("(a+)+$", "a" * 4000 + "b", False, id="(a+)+$"),
            pytest.param("(a|ab)*c", "ab" * 2000, False, id="(a|ab)*c"),
            pytest.param(".*.*.*X", "a" * 4000, False, id=".*.*.*X"),
        ],
    )
    def test_backtracking_pattern_on_crafted_url(
        self, compile_document: CompileDocument, pattern: str, url: str, expected: bool
    ) -> None:
        rule = {
            "name": "crafted",
            "kind": "engagement",
            "event": "page_view",
            "points": 1,
            "where": {"field": "properties.url", "op": "matches", "value": pattern},
        }
        compiled = compile_document(single_rule_document(rule))

        matches = match_event(compiled, contact={}, event=event("v1", "page_view", url=url))

        assert [match.rule for match in matches] == (["crafted"] if expected else [])

    @pytest.mark.parametrize(
        ("pattern", "title", "expected"),
        [
            (r"^sales\z", "Sales", True),
            (r"^sales$", "Sales\n", False),  # unlike in Python's `re`, `$` does not match before a final newline
            (r"^\p{Lu}", "Émilie", True),
            ("^directeur général", "DIRECTEUR GÉNÉRAL", True),
            (r"(?i:VP)\s+\w+", "vp Sales", True),
        ],
    )
    def test_re2_syntax(
        self, compile_document: CompileDocument, pattern: str, title: str, expected: bool
    ) -> None:
        when = {"field": "attributes.job_title", "op": "matches", "value": pattern}

        assert fit_matches(compile_document, when, {"attributes": {"job_title": title}}) is expected

    def test_lone_surrogate_in_subject(self, compile_document: CompileDocument) -> None:
        # JSON may carry "\ud800", which has no UTF-8 encoding.
        when = {"field": "attributes.note", "op": "matches", "value": "needle"}

        assert fit_matches(compile_document, when, {"attributes": {"note": "\ud800 needle"}})
        assert not fit_matches(compile_document, when, {"attributes": {"note": "\ud800 hay"}})


class TestCombinators:
    WHEN = {
        "all": [
            {"field": SIZE, "op": "gte", "value": 50},
            {
                "any": [
                    {"field": "company.industry", "op": "eq", "value": "SaaS"},
                    {"field": "company.country", "op": "in", "value": ["DE", "FR"]},
                ]
            },
        ]
    }

    @pytest.mark.parametrize(
        ("company", "expected"),
        [
            ({"size": 60, "industry": "saas"}, True),
            ({"size": 60, "country": "de"}, True),
            ({"size": 60, "industry": "Retail", "country": "US"}, False),
            ({"size": 10, "industry": "SaaS"}, False),
            ({"industry": "SaaS"}, False),
        ],
    )
    def test_all_and_any_nest(
        self, compile_document: CompileDocument, company: dict[str, Any], expected: bool
    ) -> None:
        assert fit_matches(compile_document, self.WHEN, {"company": company}) is expected


class TestDerivedFields:
    @pytest.mark.parametrize(
        ("email", "expected"),
        [
            ("Mole@Rival.Example", True),
            ("mole@rival.example.org", False),
            ("not-an-email", False),
        ],
    )
    def test_email_domain_from_email(
        self, compile_document: CompileDocument, email: str, expected: bool
    ) -> None:
        when = {"field": "email_domain", "op": "in", "value": ["rival.example"]}

        assert fit_matches(compile_document, when, {"email": email}) is expected

    def test_explicit_email_domain_wins(self, compile_document: CompileDocument) -> None:
        when = {"field": "email_domain", "op": "eq", "value": "rival.example"}
        contact = {"email": "a@other.example", "email_domain": "rival.example"}

        assert fit_matches(compile_document, when, contact)


class TestContactWhen:
    RULE = {
        "name": "enterprise-pricing",
        "kind": "engagement",
        "event": "page_view",
        "points": 10,
        "where": {"field": "properties.url", "op": "contains", "value": "/pricing"},
        "contact_when": {"field": "company.size", "op": "gte", "value": 1000},
    }

    def test_engagement_rule_reads_contact(self, compile_document: CompileDocument) -> None:
        compiled = compile_document(single_rule_document(self.RULE))
        visit = event("p1", "page_view", url="https://acme.example/pricing")

        large = match_event(compiled, contact={"company": {"size": 5000}}, event=visit)
        small = match_event(compiled, contact={"company": {"size": 50}}, event=visit)

        assert [match.rule for match in large] == ["enterprise-pricing"]
        assert small == []
