"""Sequence definitions: models, validation with field paths, navigation and evaluation."""

from services.sequencer.sequences.conditions import EventMatch, PropertyCondition, Stage, stage_reached
from services.sequencer.sequences.errors import FieldError, SequenceValidationError
from services.sequencer.sequences.evaluation import ContactFacts, evaluate_branch, goal_reached, may_reenter
from services.sequencer.sequences.navigation import first_step, next_step
from services.sequencer.sequences.schema import (
    BranchSpec,
    EmailSpec,
    QuietHours,
    Reentry,
    SendWindow,
    SequenceDefinition,
    Step,
    WaitSpec,
    Weekday,
)
from services.sequencer.sequences.validation import parse_sequence

__all__ = (
    "BranchSpec",
    "ContactFacts",
    "EmailSpec",
    "EventMatch",
    "FieldError",
    "PropertyCondition",
    "QuietHours",
    "Reentry",
    "SendWindow",
    "SequenceDefinition",
    "SequenceValidationError",
    "Stage",
    "Step",
    "WaitSpec",
    "Weekday",
    "evaluate_branch",
    "first_step",
    "goal_reached",
    "may_reenter",
    "next_step",
    "parse_sequence",
    "stage_reached",
)
