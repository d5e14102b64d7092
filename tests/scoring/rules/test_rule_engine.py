from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import durable_rules_engine  # type: ignore[import-not-found]
import pytest

from services.scoring.rules import (
    CompiledRuleSet,
    EngineError,
    RuleSetInvalid,
    compile_rule_set,
    match_event,
    parse_rule_set,
)
from services.scoring.rules import compiler as compiler_module
from services.scoring.rules.engine import DurableRulesEngine, EngineDefinitionError
from tests.scoring.rules.builders import contact, event, reference_document

CLICK_RULE = {"r0": {"all": [{"e0": {"$and": [{"k": "e"}, {"t": "email_clicked"}]}}]}}
PAIR_RULE = {
    "r1": {
        "all": [
            {"e0": {"$and": [{"k": "e"}, {"t": "email_clicked"}]}},
            {"e1": {"$and": [{"k": "e"}, {"t": "page_view"}, {"$gt": {"ts": {"e0": "ts"}}}]}},
        ]
    }
}


@pytest.fixture
def engine() -> Iterator[DurableRulesEngine]:
    engine = DurableRulesEngine({**CLICK_RULE, **PAIR_RULE})
    yield engine
    engine.close()


def fact(fact_id: str, event_type: str, ts: int = 0) -> dict[str, Any]:
    return {"id": fact_id, "k": "e", "t": event_type, "ts": ts}


class TestDurableRulesEngine:
    def test_fact_offered_to_every_rule(self, engine: DurableRulesEngine) -> None:
        evaluation = engine.evaluate([fact("a", "email_clicked", 1), fact("b", "page_view", 2)])

        fired = sorted(
            (match.rule_key, tuple(sorted(item["id"] for item in match.facts.values())))
            for match in evaluation.matches
        )
        assert fired == [("r0", ("a",)), ("r1", ("a", "b"))]
        assert evaluation.not_handled == 0
        assert evaluation.observed == 0

    def test_message_not_handled_is_counted(self, engine: DurableRulesEngine) -> None:
        """A fact no rule accepts raises MessageNotHandledException inside durable_rules."""
        evaluation = engine.evaluate([fact("a", "webinar_attended")])

        assert evaluation.matches == ()
        assert evaluation.not_handled == 1

    def test_message_observed_is_counted(self, engine: DurableRulesEngine) -> None:
        """durable_rules raises MessageObservedException for a repeated id, and keeps the first copy."""
        evaluation = engine.evaluate([fact("a", "email_clicked", 1), fact("a", "email_clicked", 5)])

        assert [match.facts["e0"]["ts"] for match in evaluation.matches] == [1]
        assert evaluation.observed == 1

    def test_no_state_survives_an_evaluation(self, engine: DurableRulesEngine) -> None:
        first = engine.evaluate([fact("a", "email_clicked")])
        second = engine.evaluate([fact("a", "email_clicked")])

        assert len(first.matches) == len(second.matches) == 1
        assert second.observed == 0
        session = first.matches[0].facts["e0"]["sid"]
        assert session != second.matches[0].facts["e0"]["sid"]
        with pytest.raises(durable_rules_engine.error, match="error code: 309"):
            engine._ruleset.get_state(session)  # 309: session not found, so it was deleted

    def test_evaluation_without_any_match_cleans_up(self, engine: DurableRulesEngine) -> None:
        """durable_rules 2.0.28 crashes when deleting a session whose actions never started."""
        for _ in range(200):
            assert engine.evaluate([fact("a", "nothing")]).matches == ()
            assert engine.evaluate([]).matches == ()

    def test_unreadable_number_raises_engine_error(self, engine: DurableRulesEngine) -> None:
        """JSON writes 1e-05 with an exponent, which durable_rules rejects; the engine stays usable."""
        with pytest.raises(EngineError, match="rejected fact id=a"):
            engine.evaluate([{**fact("a", "email_clicked"), "ts": 0.00001}])

        assert len(engine.evaluate([fact("b", "email_clicked")]).matches) == 1

    def test_closed_engine_rejects_evaluation(self) -> None:
        engine = DurableRulesEngine(CLICK_RULE)
        engine.close()
        engine.close()

        with pytest.raises(EngineError, match="closed"):
            engine.evaluate([fact("a", "email_clicked")])

    def test_bad_definition_names_rule_key(self) -> None:
        bad = {"r7": {"all": [{"e0": {"$unknown": {"t": 1}}}]}}

        with pytest.raises(EngineDefinitionError) as raised:
            DurableRulesEngine({**CLICK_RULE, **bad})

        assert list(raised.value.failures) == ["r7"]

    def test_concurrent_evaluations_keep_their_matches(self, engine: DurableRulesEngine) -> None:
        def evaluate(index: int) -> list[str]:
            evaluation = engine.evaluate([fact(f"click-{index}", "email_clicked")])
            return [str(match.facts["e0"]["id"]) for match in evaluation.matches]

        with ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(evaluate, range(400)))

        assert results == [[f"click-{index}"] for index in range(400)]


class TestCompilation:
    def test_engine_rejection_names_rule(self, monkeypatch: pytest.MonkeyPatch) -> None:
        build_plan = compiler_module.build_plan

        def corrupt(rule_set: Any) -> Any:
            plan = build_plan(rule_set)
            definition = cast(dict[str, Any], plan.events.definition)
            definition["r6"] = {"all": [{"e0": {"$unknown": {"t": 1}}}]}
            return plan

        monkeypatch.setattr(compiler_module, "build_plan", corrupt)

        with pytest.raises(RuleSetInvalid) as raised:
            compile_rule_set(parse_rule_set(reference_document()))

        (error,) = raised.value.errors
        assert (error.rule, error.field) == ("pricing-visit", "rules")
        assert error.message.startswith("the rules engine rejected this rule")

    def test_definition_is_plain_json(self, reference: CompiledRuleSet) -> None:
        pattern_keys = [key for key in reference.plan.events.definition if key.startswith("r13_")]

        assert pattern_keys == ["r13_0", "r13_1"]
        assert reference.plan.fit.definition["r0"] == {"all": [{"c": {"$and": [{"k": "c"}, {"cp0": True}]}}]}
