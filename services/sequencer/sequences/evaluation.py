"""Evaluate branches, goals and re-entry for one contact, from facts the caller gathers."""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from services.sequencer.sequences.conditions import Stage, stage_reached
from services.sequencer.sequences.schema import (
    AttributeCondition,
    BranchCondition,
    EngagementCondition,
    EventGoal,
    Goal,
    Reentry,
    ScoreCondition,
    SegmentCondition,
    SegmentLeftGoal,
    StageCondition,
    StageGoal,
)


@dataclass(frozen=True)
class ContactFacts:
    """Facts about one contact that branch and goal evaluation read.

    `engagement` maps an email step id to the human actions seen on that step's message
    (`opened`, `clicked`). The caller must leave out machine opens and bot clicks.
    """

    attributes: Mapping[str, Any] = field(default_factory=dict)
    segment_ids: Set[str] = frozenset()
    stage: Stage | None = None
    scores: Mapping[str, float] = field(default_factory=dict)
    engagement: Mapping[str, Set[str]] = field(default_factory=dict)


def evaluate_branch(condition: BranchCondition, facts: ContactFacts) -> bool:
    """Return whether a branch condition holds, which selects its `then` side."""
    if isinstance(condition, AttributeCondition):
        return condition.matches_values(facts.attributes)
    if isinstance(condition, SegmentCondition):
        return (condition.segment_id in facts.segment_ids) == condition.is_member
    if isinstance(condition, StageCondition):
        return facts.stage is not None and Stage(facts.stage) in condition.stages
    if isinstance(condition, ScoreCondition):
        return _score_holds(condition, facts.scores.get(condition.model))
    return _engaged(condition, facts)


def _score_holds(condition: ScoreCondition, score: float | None) -> bool:
    if score is None:
        return False
    if condition.op == "gt":
        return score > condition.value
    if condition.op == "gte":
        return score >= condition.value
    if condition.op == "lt":
        return score < condition.value
    if condition.op == "lte":
        return score <= condition.value
    return score == condition.value


def _engaged(condition: EngagementCondition, facts: ContactFacts) -> bool:
    actions = facts.engagement.get(condition.step_id, frozenset())
    # A click proves the email was opened even when its images stayed blocked.
    if condition.action == "opened":
        return "opened" in actions or "clicked" in actions
    return "clicked" in actions


def goal_reached(
    goal: Goal | None,
    facts: ContactFacts,
    *,
    event_type: str | None = None,
    event_properties: Mapping[str, Any] | None = None,
) -> bool:
    """Return whether the contact has met the sequence goal.

    For an event goal, pass the event being processed; the goal holds when that event matches.
    """
    if goal is None:
        return False
    if isinstance(goal, StageGoal):
        return stage_reached(facts.stage, goal.stage)
    if isinstance(goal, SegmentLeftGoal):
        return goal.segment_id not in facts.segment_ids
    assert isinstance(goal, EventGoal)
    if event_type is None:
        return False
    return goal.matches(event_type, event_properties or {})


def may_reenter(reentry: Reentry, previous_enrolled_at: datetime | None, now: datetime) -> bool:
    """Return whether a contact may be enrolled again, given the start of its previous enrolment.

    The caller must also refuse while the contact is still active in the sequence.
    """
    if previous_enrolled_at is None or reentry.mode == "always":
        return True
    if reentry.mode == "never":
        return False
    assert reentry.days is not None
    return now - previous_enrolled_at >= timedelta(days=reentry.days)
