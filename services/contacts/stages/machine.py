"""The lifecycle-stage state machine: which stage changes are allowed and what each one needs.

The funnel runs subscriber → lead → mql → sql → opportunity → customer; `disqualified` sits beside
it. Every entry point that changes a stage (API, import, scoring, sequence actions) must call
`check_transition`, so the rules hold everywhere.

| move                                              | kind               | reason   | allow_regression |
| ------------------------------------------------- | ------------------ | -------- | ---------------- |
| forward in the funnel, skipping stages allowed    | `forward`          | optional | not needed       |
| mql → sql (sales accepts the MQL)                 | `sales_acceptance` | optional | not needed       |
| mql → lead or mql → disqualified (sales rejects)  | `sales_rejection`  | required | not needed       |
| subscriber, lead, sql, opportunity → disqualified | `disqualification` | required | not needed       |
| any other backward move, out of disqualified, or customer → disqualified | `regression` | required | required |

Moving to the current stage raises StageUnchanged, which callers that promote automatically (scoring,
import) can treat as a no-op.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

MAX_REASON_LENGTH = 1000
MAX_ACTOR_LENGTH = 200


class Stage(StrEnum):
    SUBSCRIBER = "subscriber"
    LEAD = "lead"
    MQL = "mql"
    SQL = "sql"
    OPPORTUNITY = "opportunity"
    CUSTOMER = "customer"
    DISQUALIFIED = "disqualified"


FUNNEL: tuple[Stage, ...] = (
    Stage.SUBSCRIBER,
    Stage.LEAD,
    Stage.MQL,
    Stage.SQL,
    Stage.OPPORTUNITY,
    Stage.CUSTOMER,
)


class TransitionKind(StrEnum):
    FORWARD = "forward"
    SALES_ACCEPTANCE = "sales_acceptance"
    SALES_REJECTION = "sales_rejection"
    DISQUALIFICATION = "disqualification"
    REGRESSION = "regression"


@dataclass(frozen=True, slots=True)
class Transition:
    """An allowed stage change, ready to be stored as a history entry (the caller adds the time)."""

    from_stage: Stage
    to_stage: Stage
    kind: TransitionKind
    reason: str | None
    actor: str


class StageError(ValueError):
    """A stage change that is rejected; `field` names the request field at fault."""

    field: str = "stage"

    def __init__(self, message: str) -> None:
        self.detail = message
        super().__init__(message)


class UnknownStageError(StageError):
    """A stage name that is not one of the seven stages (maps to HTTP 422)."""


class StageUnchanged(StageError):
    """The contact is already at the target stage (a no-op for automatic promotions, HTTP 409 for a person)."""


class TransitionNotAllowed(StageError):
    """A move the rules forbid without allow_regression (maps to HTTP 409, and the stage stays)."""


class InvalidReasonError(StageError):
    """A reason that is not a string or is too long (maps to HTTP 422)."""

    field = "reason"


class ReasonRequired(InvalidReasonError):
    """A move that needs a reason was requested without one (maps to HTTP 422)."""


class InvalidActorError(StageError):
    """A missing or overlong actor (maps to HTTP 422)."""

    field = "actor"


def parse_stage(value: object, *, field: str = "stage") -> Stage:
    """Return the Stage named by `value`, ignoring case and surrounding spaces ("MQL" is mql)."""
    if isinstance(value, Stage):
        return value

    if isinstance(value, str):
        try:
            return Stage(value.strip().lower())
        except ValueError:
            pass

    names = ", ".join(stage.value for stage in Stage)
    error = UnknownStageError(f"{value!r} is not a stage; the stages are {names}")
    error.field = field
    raise error


def check_transition(
    current: Stage | str,
    target: Stage | str,
    *,
    reason: str | None,
    actor: str,
    allow_regression: bool = False,
) -> Transition:
    """Return the Transition from `current` to `target`, or raise the StageError that forbids it.

    `reason` is trimmed and a blank one counts as missing. `actor` names who requests the change
    (`sales:jane@example.com`, `scoring:default`, `import:<job id>`) and is required.
    """
    from_stage = parse_stage(current, field="current")
    to_stage = parse_stage(target)
    clean_reason = _clean_reason(reason)
    clean_actor = _clean_actor(actor)

    if from_stage is to_stage:
        raise StageUnchanged(f"the contact is already at stage {to_stage.value}")

    kind = classify(from_stage, to_stage)
    _check_requirements(from_stage, to_stage, kind, clean_reason, allow_regression)
    return Transition(from_stage, to_stage, kind, clean_reason, clean_actor)


def classify(from_stage: Stage, to_stage: Stage) -> TransitionKind:
    """Return the kind of the move between two different stages, before any permission check."""
    if from_stage is Stage.MQL and to_stage is Stage.SQL:
        return TransitionKind.SALES_ACCEPTANCE

    if from_stage is Stage.MQL and to_stage in (Stage.LEAD, Stage.DISQUALIFIED):
        return TransitionKind.SALES_REJECTION

    if to_stage is Stage.DISQUALIFIED and from_stage is not Stage.CUSTOMER:
        return TransitionKind.DISQUALIFICATION

    if from_stage in FUNNEL and to_stage in FUNNEL and FUNNEL.index(to_stage) > FUNNEL.index(from_stage):
        return TransitionKind.FORWARD

    return TransitionKind.REGRESSION


def allowed_targets(current: Stage | str, *, allow_regression: bool = False) -> tuple[Stage, ...]:
    """Return the stages `current` can move to, assuming a reason is given where one is needed."""
    from_stage = parse_stage(current, field="current")
    targets = [stage for stage in Stage if stage is not from_stage]
    if allow_regression:
        return tuple(targets)

    return tuple(stage for stage in targets if classify(from_stage, stage) is not TransitionKind.REGRESSION)


def _check_requirements(
    from_stage: Stage,
    to_stage: Stage,
    kind: TransitionKind,
    reason: str | None,
    allow_regression: bool,
) -> None:
    move = f"{from_stage.value} → {to_stage.value}"

    if kind is TransitionKind.REGRESSION and not allow_regression:
        raise TransitionNotAllowed(
            f"{move} moves the contact backwards; stages only move forward unless the request sets "
            "allow_regression=true and gives a reason"
        )

    if kind in _KINDS_NEEDING_REASON and reason is None:
        raise ReasonRequired(f"{move} is a {kind.value.replace('_', ' ')} and needs a reason")


_KINDS_NEEDING_REASON = frozenset(
    {TransitionKind.SALES_REJECTION, TransitionKind.DISQUALIFICATION, TransitionKind.REGRESSION}
)


def _clean_reason(reason: str | None) -> str | None:
    if reason is None:
        return None

    if not isinstance(reason, str):
        raise InvalidReasonError(f"the reason must be a string, got {type(reason).__name__}")

    text = reason.strip()
    if len(text) > MAX_REASON_LENGTH:
        raise InvalidReasonError(f"the reason has {len(text)} characters, more than the maximum of {MAX_REASON_LENGTH}")

    return text or None


def _clean_actor(actor: str) -> str:
    text = actor.strip() if isinstance(actor, str) else ""
    if not text:
        raise InvalidActorError("the actor is missing; name who makes the change, such as 'sales:jane@example.com'")

    if len(text) > MAX_ACTOR_LENGTH:
        raise InvalidActorError(f"the actor has {len(text)} characters, more than the maximum of {MAX_ACTOR_LENGTH}")

    return text
