"""The written, versioned definition of each lifecycle stage that marketing and sales agree on.

The defaults below are version 1 of each definition, approved by the placeholder "default" on both
sides. A team replaces them through `revise_definition`, which keeps the stage and raises the version.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from services.contacts.stages.machine import Stage

DEFAULT_APPROVER = "default"

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]
Criterion = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)]
Approver = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class Approvals(BaseModel):
    """The approvers of one version of a definition, for marketing and for sales."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    marketing: Approver
    sales: Approver


class StageDefinitionRevision(BaseModel):
    """The body of a new version of one stage definition."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    definition: Text
    entry_criteria: tuple[Criterion, ...] = Field(min_length=1, max_length=50)
    approved_by: Approvals


class StageDefinition(StageDefinitionRevision):
    """One version of the written definition of a stage."""

    stage: Stage
    version: int = Field(ge=1)


def revise_definition(current: StageDefinition, revision: StageDefinitionRevision) -> StageDefinition:
    """Return the next version of `current` with the text and approvals of `revision`."""
    return StageDefinition(stage=current.stage, version=current.version + 1, **revision.model_dump())


def default_stage_definitions() -> tuple[StageDefinition, ...]:
    """Return version 1 of every stage definition, in funnel order with disqualified last."""
    return tuple(_default(stage, *_DEFAULT_TEXT[stage]) for stage in Stage)


def default_stage_definition(stage: Stage) -> StageDefinition:
    """Return version 1 of the definition of `stage`."""
    return _default(stage, *_DEFAULT_TEXT[stage])


def _default(stage: Stage, title: str, definition: str, criteria: tuple[str, ...]) -> StageDefinition:
    approvals = Approvals(marketing=DEFAULT_APPROVER, sales=DEFAULT_APPROVER)
    return StageDefinition(
        stage=stage,
        version=1,
        title=title,
        definition=definition,
        entry_criteria=criteria,
        approved_by=approvals,
    )


_DEFAULT_TEXT: dict[Stage, tuple[str, str, tuple[str, ...]]] = {
    Stage.SUBSCRIBER: (
        "Subscriber",
        "A person who has opted in to receive marketing content, such as the newsletter or blog "
        "updates, but has not yet shown interest in buying.",
        (
            "Gave a valid email address and consent to receive marketing email.",
            "Has not submitted any form other than the subscription itself.",
        ),
    ),
    Stage.LEAD: (
        "Lead",
        "A person who has shown interest beyond subscribing by giving their details in exchange for "
        "something of value, such as a content download, a webinar registration or a contact form.",
        (
            "Submitted a form with at least an email address, or was imported from a source where "
            "they asked to be contacted.",
            "Has a lead score below the MQL threshold of the active scoring model.",
        ),
    ),
    Stage.MQL: (
        "Marketing-qualified lead (MQL)",
        "A lead that marketing judges ready for sales follow-up because they fit the ideal customer "
        "profile and have engaged enough to suggest buying intent.",
        (
            "Reached or crossed the MQL threshold of the active scoring model, counting fit and "
            "engagement points together.",
            "Or asked for a demo, a quote or a sales call.",
            "Is not a competitor, a student or a personal address outside the target market.",
        ),
    ),
    Stage.SQL: (
        "Sales-qualified lead (SQL)",
        "An MQL that sales has reviewed and accepted as worth direct follow-up by a salesperson.",
        (
            "A salesperson reviewed the MQL and accepted it; the acceptance names that salesperson.",
            "The contact can be reached and works at a company in the target market.",
        ),
    ),
    Stage.OPPORTUNITY: (
        "Opportunity",
        "An SQL with whom sales has a qualified deal in progress: a confirmed need, a budget holder "
        "involved and a proposal or evaluation under way.",
        (
            "A deal was opened in the sales pipeline for this contact.",
            "Need, budget and decision timeline were confirmed in a sales conversation.",
        ),
    ),
    Stage.CUSTOMER: (
        "Customer",
        "A person at an organisation that has signed a contract or paid for the product.",
        ("The deal was closed as won, or the first invoice was paid.",),
    ),
    Stage.DISQUALIFIED: (
        "Disqualified",
        "A person that marketing or sales has decided not to pursue, such as a competitor, a "
        "student, a fake sign-up or a company outside the target market.",
        (
            "Sales rejected the MQL with a reason, or marketing or sales disqualified the contact "
            "with a reason.",
            "The reason is recorded in the stage history.",
        ),
    ),
}
