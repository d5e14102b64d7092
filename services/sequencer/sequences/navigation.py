"""Walk a sequence definition: the first step, and the step after a given one.

An enrolment stores the id of its current step. After running it, the worker calls `next_step` to
get the step that follows. The end of a branch side continues after the branch, and the end of the top-level
list finishes the enrolment (`None`).
"""

from __future__ import annotations

from dataclasses import dataclass

from services.sequencer.sequences.schema import SequenceDefinition, Step


@dataclass(frozen=True)
class _Slot:
    siblings: list[Step]
    index: int
    parent_id: str | None


def first_step(definition: SequenceDefinition) -> Step:
    """Return the step a new enrolment starts with."""
    return definition.steps[0]


def next_step(definition: SequenceDefinition, step_id: str, *, branch_taken: bool | None = None) -> Step | None:
    """Return the step after `step_id`, or None when the enrolment is finished.

    For a branch step, `branch_taken` is the result of its condition (True for `then`).

    Raises:
        KeyError: no step has `step_id`.
        ValueError: `branch_taken` is missing for a branch step.
    """
    slots = _index(definition)
    if step_id not in slots:
        raise KeyError(f"sequence {definition.name!r} has no step {step_id!r}")

    slot = slots[step_id]
    step = slot.siblings[slot.index]
    if step.branch is None:
        return _continue_after(step_id, slots)

    if branch_taken is None:
        raise ValueError(f"step {step_id!r} is a branch: pass branch_taken with its condition's result")
    side = step.branch.then_steps if branch_taken else step.branch.else_steps
    if isinstance(side, str):
        return slots[side].siblings[slots[side].index]
    if side:
        return side[0]
    return _continue_after(step_id, slots)


def _continue_after(step_id: str, slots: dict[str, _Slot]) -> Step | None:
    slot = slots[step_id]
    if slot.index + 1 < len(slot.siblings):
        return slot.siblings[slot.index + 1]
    if slot.parent_id is None:
        return None
    return _continue_after(slot.parent_id, slots)


def _index(definition: SequenceDefinition) -> dict[str, _Slot]:
    slots: dict[str, _Slot] = {}
    _index_list(definition.steps, None, slots)
    return slots


def _index_list(steps: list[Step], parent_id: str | None, slots: dict[str, _Slot]) -> None:
    for index, step in enumerate(steps):
        assert step.id is not None, "ids are assigned when the definition is validated"
        slots[step.id] = _Slot(steps, index, parent_id)
        if step.branch is None:
            continue
        for side in (step.branch.then_steps, step.branch.else_steps):
            if isinstance(side, list):
                _index_list(side, step.id, slots)
