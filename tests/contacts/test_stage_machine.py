import itertools

import pytest

from services.contacts.stages import (
    FUNNEL,
    InvalidActorError,
    InvalidReasonError,
    ReasonRequired,
    Stage,
    StageUnchanged,
    Transition,
    TransitionKind,
    TransitionNotAllowed,
    UnknownStageError,
    allowed_targets,
    check_transition,
    parse_stage,
)

FORWARD = TransitionKind.FORWARD
ACCEPT = TransitionKind.SALES_ACCEPTANCE
REJECT = TransitionKind.SALES_REJECTION
DISQUALIFY = TransitionKind.DISQUALIFICATION
BACK = TransitionKind.REGRESSION

# Every ordered pair of different stages and the kind of move it is, written out by hand.
EXPECTED_KINDS = {
    ("subscriber", "lead"): FORWARD,
    ("subscriber", "mql"): FORWARD,
    ("subscriber", "sql"): FORWARD,
    ("subscriber", "opportunity"): FORWARD,
    ("subscriber", "customer"): FORWARD,
    ("subscriber", "disqualified"): DISQUALIFY,
    ("lead", "subscriber"): BACK,
    ("lead", "mql"): FORWARD,
    ("lead", "sql"): FORWARD,
    ("lead", "opportunity"): FORWARD,
    ("lead", "customer"): FORWARD,
    ("lead", "disqualified"): DISQUALIFY,
    ("mql", "subscriber"): BACK,
    ("mql", "lead"): REJECT,
    ("mql", "sql"): ACCEPT,
    ("mql", "opportunity"): FORWARD,
    ("mql", "customer"): FORWARD,
    ("mql", "disqualified"): REJECT,
    ("sql", "subscriber"): BACK,
    ("sql", "lead"): BACK,
    ("sql", "mql"): BACK,
    ("sql", "opportunity"): FORWARD,
    ("sql", "customer"): FORWARD,
    ("sql", "disqualified"): DISQUALIFY,
    ("opportunity", "subscriber"): BACK,
    ("opportunity", "lead"): BACK,
    ("opportunity", "mql"): BACK,
    ("opportunity", "sql"): BACK,
    ("opportunity", "customer"): FORWARD,
    ("opportunity", "disqualified"): DISQUALIFY,
    ("customer", "subscriber"): BACK,
    ("customer", "lead"): BACK,
    ("customer", "mql"): BACK,
    ("customer", "sql"): BACK,
    ("customer", "opportunity"): BACK,
    ("customer", "disqualified"): BACK,
    ("disqualified", "subscriber"): BACK,
    ("disqualified", "lead"): BACK,
    ("disqualified", "mql"): BACK,
    ("disqualified", "sql"): BACK,
    ("disqualified", "opportunity"): BACK,
    ("disqualified", "customer"): BACK,
}
FREE_MOVES = [pair for pair, kind in EXPECTED_KINDS.items() if kind in (FORWARD, ACCEPT)]
REASONED_MOVES = [pair for pair, kind in EXPECTED_KINDS.items() if kind in (REJECT, DISQUALIFY)]
REGRESSIONS = [pair for pair, kind in EXPECTED_KINDS.items() if kind is BACK]


def test_table_covers_every_pair() -> None:
    pairs = {(a.value, b.value) for a, b in itertools.permutations(Stage, 2)}

    assert set(EXPECTED_KINDS) == pairs


def test_funnel_order() -> None:
    assert [stage.value for stage in FUNNEL] == ["subscriber", "lead", "mql", "sql", "opportunity", "customer"]


class TestFreeMoves:
    @pytest.mark.parametrize(("current", "target"), FREE_MOVES)
    def test_allowed_without_reason(self, current: str, target: str) -> None:
        transition = check_transition(current, target, reason=None, actor="scoring:default")

        assert transition == Transition(Stage(current), Stage(target), EXPECTED_KINDS[(current, target)], None, "scoring:default")

    @pytest.mark.parametrize(("current", "target"), FREE_MOVES)
    def test_reason_kept_when_given(self, current: str, target: str) -> None:
        transition = check_transition(current, target, reason="  demo booked ", actor="sales:jane")

        assert transition.reason == "demo booked"


class TestReasonedMoves:
    @pytest.mark.parametrize(("current", "target"), REASONED_MOVES)
    def test_allowed_with_reason(self, current: str, target: str) -> None:
        transition = check_transition(current, target, reason="student, no budget", actor="sales:jane")

        assert transition.kind is EXPECTED_KINDS[(current, target)]
        assert transition.reason == "student, no budget"

    @pytest.mark.parametrize(("current", "target"), REASONED_MOVES)
    @pytest.mark.parametrize("reason", [None, "", "   "])
    def test_rejected_without_reason(self, current: str, target: str, reason: str | None) -> None:
        with pytest.raises(ReasonRequired) as caught:
            check_transition(current, target, reason=reason, actor="sales:jane")

        assert caught.value.field == "reason"
        assert f"{current} → {target}" in str(caught.value)

    def test_sales_rejection_back_to_lead(self) -> None:
        transition = check_transition("mql", "lead", reason="not ready, revisit in Q3", actor="sales:jane")

        assert transition.kind is TransitionKind.SALES_REJECTION
        assert transition.to_stage is Stage.LEAD


class TestRegressions:
    @pytest.mark.parametrize(("current", "target"), REGRESSIONS)
    def test_forbidden_by_default(self, current: str, target: str) -> None:
        with pytest.raises(TransitionNotAllowed) as caught:
            check_transition(current, target, reason="fix", actor="crm-sync")

        assert "allow_regression=true" in str(caught.value)

    @pytest.mark.parametrize(("current", "target"), REGRESSIONS)
    def test_allowed_with_flag_and_reason(self, current: str, target: str) -> None:
        transition = check_transition(current, target, reason="data correction", actor="ops:lee", allow_regression=True)

        assert transition.kind is TransitionKind.REGRESSION
        assert (transition.from_stage.value, transition.to_stage.value) == (current, target)

    @pytest.mark.parametrize(("current", "target"), REGRESSIONS)
    def test_flag_without_reason_rejected(self, current: str, target: str) -> None:
        with pytest.raises(ReasonRequired):
            check_transition(current, target, reason=None, actor="ops:lee", allow_regression=True)

    def test_sql_back_to_mql_needs_flag(self) -> None:
        """A contact at SQL stays there when a plain PATCH, import or automation requests MQL."""
        with pytest.raises(TransitionNotAllowed):
            check_transition("SQL", "MQL", reason=None, actor="import:job-1")

        transition = check_transition("SQL", "MQL", reason="disqualified", actor="api", allow_regression=True)

        assert (transition.from_stage, transition.to_stage, transition.reason) == (Stage.SQL, Stage.MQL, "disqualified")

    def test_flag_on_forward_move_is_harmless(self) -> None:
        transition = check_transition("lead", "mql", reason=None, actor="scoring", allow_regression=True)

        assert transition.kind is TransitionKind.FORWARD


class TestOtherErrors:
    @pytest.mark.parametrize("stage", list(Stage))
    def test_same_stage_is_unchanged(self, stage: Stage) -> None:
        with pytest.raises(StageUnchanged, match=f"already at stage {stage.value}"):
            check_transition(stage, stage, reason="again", actor="scoring", allow_regression=True)

    def test_unknown_target_named(self) -> None:
        with pytest.raises(UnknownStageError) as caught:
            check_transition("lead", "hot", reason=None, actor="sales")

        assert caught.value.field == "stage"
        assert "'hot' is not a stage" in str(caught.value)

    def test_unknown_current_named(self) -> None:
        with pytest.raises(UnknownStageError) as caught:
            check_transition("prospect", "lead", reason=None, actor="sales")

        assert caught.value.field == "current"

    @pytest.mark.parametrize("actor", ["", "   ", None])
    def test_actor_required(self, actor: object) -> None:
        with pytest.raises(InvalidActorError) as caught:
            check_transition("lead", "mql", reason=None, actor=actor)  # type: ignore[arg-type]

        assert caught.value.field == "actor"

    def test_overlong_reason_rejected(self) -> None:
        with pytest.raises(InvalidReasonError, match="more than the maximum of 1000"):
            check_transition("mql", "lead", reason="x" * 1001, actor="sales")

    def test_reason_must_be_text(self) -> None:
        with pytest.raises(InvalidReasonError, match="must be a string"):
            check_transition("mql", "lead", reason=5, actor="sales")  # type: ignore[arg-type]


class TestParseStage:
    @pytest.mark.parametrize(("raw", "stage"), [("MQL", Stage.MQL), (" sql ", Stage.SQL), ("Customer", Stage.CUSTOMER)])
    def test_case_insensitive(self, raw: str, stage: Stage) -> None:
        assert parse_stage(raw) is stage

    def test_non_string_rejected(self) -> None:
        with pytest.raises(UnknownStageError):
            parse_stage(3)


class TestAllowedTargets:
    def test_mql_without_regression(self) -> None:
        assert allowed_targets("mql") == (Stage.LEAD, Stage.SQL, Stage.OPPORTUNITY, Stage.CUSTOMER, Stage.DISQUALIFIED)

    def test_customer_without_regression(self) -> None:
        assert allowed_targets("customer") == ()

    def test_disqualified_with_regression(self) -> None:
        assert allowed_targets("disqualified", allow_regression=True) == FUNNEL
