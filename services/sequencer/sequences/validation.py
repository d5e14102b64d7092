"""Parse a sequence definition and name every error by its field path.

`parse_sequence` is the entry point for request bodies: it returns a `SequenceDefinition` or raises
`SequenceValidationError`, whose `errors` list each invalid field as `steps[2].wait.days` with a
message. The HTTP layer turns that list into the `errors` of an RFC 9457 problem.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from services.sequencer.sequences.errors import (
    FieldError,
    FieldErrors,
    Location,
    SequenceValidationError,
    format_path,
)

if TYPE_CHECKING:
    from services.sequencer.sequences.schema import SequenceDefinition, Step

MAX_STEPS = 200
MAX_BRANCH_DEPTH = 8

# Pydantic puts the chosen member's tag after these fields in an error location. The tag is no key of
# the JSON document, so it is dropped to keep the path readable (`trigger.event_type`).
_UNION_FIELDS = frozenset({"trigger", "goal", "condition", "then", "else"})


def parse_sequence(data: Mapping[str, Any] | str | bytes) -> SequenceDefinition:
    """Validate a definition given as a mapping or as JSON text.

    Raises:
        SequenceValidationError: with one `FieldError` per invalid field.
    """
    from services.sequencer.sequences.schema import SequenceDefinition

    try:
        if isinstance(data, str | bytes):
            return SequenceDefinition.model_validate_json(data)
        return SequenceDefinition.model_validate(data)
    except ValidationError as error:
        raise SequenceValidationError(field_errors(error)) from None


def field_errors(error: ValidationError) -> list[FieldError]:
    """Convert a pydantic error into field errors with document paths."""
    result: list[FieldError] = []
    for item in error.errors():
        location = _strip_union_tags(tuple(item["loc"]))
        cause = (item.get("ctx") or {}).get("error")
        if isinstance(cause, FieldErrors):
            result.extend(FieldError(format_path((*location, *relative)), message) for relative, message in cause.errors)
        else:
            message = item["msg"].removeprefix("Value error, ")
            result.append(FieldError(format_path(location), message))
    return result


def _strip_union_tags(location: Location) -> Location:
    kept: list[str | int] = []
    skip_next = False
    for part in location:
        if skip_next:
            skip_next = False
            continue
        kept.append(part)
        skip_next = isinstance(part, str) and part in _UNION_FIELDS
    return tuple(kept)


def check_step_graph(definition: SequenceDefinition) -> list[tuple[Location, str]]:
    """Check limits, ids and references between steps; give missing ids their `step-N` value.

    Rules: at most `MAX_STEPS` steps and `MAX_BRANCH_DEPTH` nested branches; ids are unique; an
    engagement condition names an earlier email step; a jump goes to a later step, so a sequence can
    never loop.
    """
    steps = list(definition.iter_steps())
    errors = _limit_errors(steps)
    if errors:
        return errors

    errors = _assign_ids(steps)
    position = {step.id: index for index, (_, step) in enumerate(steps)}
    for index, (location, step) in enumerate(steps):
        if step.branch is not None:
            errors.extend(_branch_errors(location, step, index, position, dict(steps_by_id(steps))))
    return errors


def steps_by_id(steps: Iterable[tuple[Location, Step]]) -> Iterable[tuple[str, Step]]:
    """Pair each step with its id."""
    for _, step in steps:
        if step.id is not None:
            yield step.id, step


def _limit_errors(steps: list[tuple[Location, Step]]) -> list[tuple[Location, str]]:
    if len(steps) > MAX_STEPS:
        return [(("steps",), f"a sequence has at most {MAX_STEPS} steps, counting nested ones; found {len(steps)}")]

    for location, _ in steps:
        depth = location.count("branch")
        if depth > MAX_BRANCH_DEPTH:
            return [(location, f"branches nest at most {MAX_BRANCH_DEPTH} deep")]
    return []


def _assign_ids(steps: list[tuple[Location, Step]]) -> list[tuple[Location, str]]:
    errors: list[tuple[Location, str]] = []
    seen: dict[str, Location] = {}
    for location, step in steps:
        if step.id is None:
            continue
        if step.id in seen:
            errors.append(((*location, "id"), f"duplicate step id {step.id!r}, also used at {format_path(seen[step.id])}"))
        seen.setdefault(step.id, location)

    for number, (_, step) in enumerate(steps, start=1):
        if step.id is None:
            step.id = _free_id(f"step-{number}", seen)
            seen[step.id] = ()
    return errors


def _free_id(candidate: str, taken: Mapping[str, Location]) -> str:
    suffix = 2
    result = candidate
    while result in taken:
        result = f"{candidate}-{suffix}"
        suffix += 1
    return result


def _branch_errors(
    location: Location,
    step: Step,
    index: int,
    position: Mapping[str | None, int],
    by_id: Mapping[str, Step],
) -> list[tuple[Location, str]]:
    assert step.branch is not None
    errors: list[tuple[Location, str]] = []
    condition = step.branch.condition

    if condition.type == "engagement":
        target = condition.step_id
        where = (*location, "branch", "condition", "step_id")
        if target not in by_id:
            errors.append((where, f"no step has id {target!r}"))
        elif by_id[target].email is None:
            errors.append((where, f"step {target!r} is a {by_id[target].kind} step; engagement needs an email step"))
        elif position[target] >= index:
            errors.append((where, f"step {target!r} comes after this branch; engagement needs an earlier email step"))

    for side, alias in ((step.branch.then_steps, "then"), (step.branch.else_steps, "else")):
        if not isinstance(side, str):
            continue
        where = (*location, "branch", alias)
        if side not in position:
            errors.append((where, f"no step has id {side!r}"))
        elif position[side] <= index:
            errors.append((where, f"jump to {side!r} goes backwards; jumps must go to a later step"))
    return errors
