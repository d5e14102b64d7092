"""The examples in docs/scoring-rules.md stay true: the rule sets load and the errors are real."""

import json
import re
from pathlib import Path
from typing import Any

import pytest

from services.scoring.rules import RuleSetInvalid, load_rule_set, parse_rule_set

DOCS = Path(__file__).resolve().parents[3] / "docs" / "scoring-rules.md"


def code_blocks(language: str) -> list[str]:
    text = DOCS.read_text(encoding="utf-8")
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def documented_errors() -> list[dict[str, Any]]:
    (block,) = [block for block in code_blocks("json") if block.lstrip().startswith("[")]
    errors: list[dict[str, Any]] = json.loads(block)
    return errors


def invalid_document() -> dict[str, Any]:
    pricing_url = {"field": "properties.url", "op": "matches", "value": "/pricing"}
    return {
        "mql_threshold": -5,
        "rules": [
            {
                "name": "pricing-visit",
                "kind": "engagement",
                "event": "page_view",
                "points": 0,
                "where": {**pricing_url, "value": "(/pricing"},
                "cap": {"max_points": -3},
            },
            {
                "name": "size-fit",
                "kind": "fit",
                "points": 5,
                "when": {
                    "all": [
                        {"field": "company.size", "op": "like", "value": "5"},
                        {"field": "company.size", "op": "between", "value": [500, 50]},
                    ]
                },
            },
            {
                "name": "vp-title",
                "kind": "fit",
                "points": 10,
                "when": {"field": "attributes.job_title", "op": "contains", "value": "VP"},
                "cap": {"max_points": 10},
            },
            {
                "name": "click-then-pricing",
                "kind": "pattern",
                "points": 20,
                "within_days": 7,
                "steps": [
                    {"event": "email_clicked"},
                    {"event": "page_view", "where": {**pricing_url, "value": "["}},
                ],
            },
            {"kind": "fit", "points": 5, "when": {"field": "company.size", "op": "exists"}},
            {"name": "pricing-visit", "kind": "engagement", "event": "page_view", "points": 5},
        ],
    }


class TestDocumentedExamples:
    def test_json_rule_set_loads(self) -> None:
        blocks = [block for block in code_blocks("json") if block.lstrip().startswith("{")]

        assert len(blocks) == 1
        with load_rule_set(blocks[0], format="json") as compiled:
            kinds = {rule.kind for rule in compiled.rule_set.rules}
            assert kinds == {"fit", "engagement", "pattern"}

    def test_yaml_rule_set_loads(self) -> None:
        (block,) = code_blocks("yaml")

        with load_rule_set(block, format="yaml") as compiled:
            assert compiled.rule_set.decay.type == "linear"
            assert compiled.history_window.days == 14

    def test_documented_errors_are_produced(self) -> None:
        with pytest.raises(RuleSetInvalid) as raised:
            parse_rule_set(invalid_document())

        produced = sorted(json.dumps(error, sort_keys=True) for error in raised.value.as_dicts())
        documented = sorted(json.dumps(error, sort_keys=True) for error in documented_errors())
        assert produced == documented
