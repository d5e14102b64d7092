"""The one place where a contact's lifecycle stage changes, and the stored stage definitions.

`change_stage` is called by every entry point that moves a stage: PATCH /contacts/{id}, the stage
route, imports, the MQL promotion from scoring and sequence actions through the internal stage route.
It runs the transition rules of stages/machine.py, so none of those paths can move a contact
backwards without `allow_regression` and a reason, and a rejected move writes no history.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.contacts.changes import ContactChanges
from services.contacts.people.locks import lock_contact
from services.contacts.people.models import Contact
from services.contacts.stages.definitions import (
    StageDefinition,
    StageDefinitionRevision,
    default_stage_definition,
    revise_definition,
)
from services.contacts.stages.machine import Stage, Transition, check_transition
from services.contacts.stages.models import StageChange, StageDefinitionVersion
from services.kit import clock
from services.kit.contracts import contacts as topics
from services.kit.logging import get_logger
from services.kit.outbox import Outbox

log = get_logger(__name__)


async def change_stage(
    session: AsyncSession,
    outbox: Outbox,
    contact: Contact,
    target: Stage | str,
    changes: ContactChanges,
    *,
    reason: str | None,
    actor: str,
    allow_regression: bool = False,
) -> StageChange:
    """Move `contact` to `target`, record the history entry and publish `stage.changed` (not committed).

    Raises the StageError of stages/machine.py that forbids the move (StageUnchanged when the
    contact is already there); nothing is written then.
    """
    stored_stage = await lock_contact(session, contact.id)
    if stored_stage is not None and stored_stage != contact.stage:
        # Another transaction moved the stage since this contact was read; check against that.
        contact.stage = stored_stage
    transition = check_transition(contact.stage, target, reason=reason, actor=actor, allow_regression=allow_regression)
    now = clock.now()
    entry = _history_entry(contact.id, transition, now)
    session.add(entry)

    contact.stage = transition.to_stage.value
    contact.stage_changed_at = now
    contact.updated_at = now
    session.add(contact)

    outbox.publish(
        session,
        topics.STAGE_CHANGED,
        topics.StageChanged(
            contact_id=contact.id,
            from_stage=transition.from_stage.value,
            to_stage=transition.to_stage.value,
            at=now,
            reason=transition.reason,
            actor=transition.actor,
        ),
    )
    changes.changed(contact.id, ["stage"])
    log.info(
        "contact.stage_changed",
        contact_id=contact.id,
        from_stage=transition.from_stage.value,
        to_stage=transition.to_stage.value,
        kind=transition.kind.value,
    )
    return entry


def _history_entry(contact_id: str, transition: Transition, at: datetime) -> StageChange:
    return StageChange(
        contact_id=contact_id,
        from_stage=transition.from_stage.value,
        to_stage=transition.to_stage.value,
        kind=transition.kind.value,
        reason=transition.reason,
        actor=transition.actor,
        at=at,
    )


async def stage_history(session: AsyncSession, contact_id: str, *, limit: int, after_id: int | None) -> list[StageChange]:
    query = select(StageChange).where(StageChange.contact_id == contact_id)
    if after_id is not None:
        query = query.where(col(StageChange.id) > after_id)
    return list((await session.exec(query.order_by(col(StageChange.id)).limit(limit))).all())


async def current_definitions(session: AsyncSession) -> list[StageDefinition]:
    """Return the newest version of every stage's definition, falling back to the built-in version 1."""
    newest = (
        select(StageDefinitionVersion.stage, func.max(StageDefinitionVersion.version).label("version"))
        .group_by(StageDefinitionVersion.stage)
        .subquery()
    )
    query = select(StageDefinitionVersion).join(
        newest,
        (col(StageDefinitionVersion.stage) == newest.c.stage) & (col(StageDefinitionVersion.version) == newest.c.version),
    )
    stored = {row.stage: _definition(row) for row in (await session.exec(query)).all()}
    return [stored.get(stage.value) or default_stage_definition(stage) for stage in Stage]


async def revise_stage(session: AsyncSession, stage: Stage, revision: StageDefinitionRevision) -> StageDefinition:
    """Store the next version of `stage`'s definition (not committed) and return it."""
    current = next(definition for definition in await current_definitions(session) if definition.stage is stage)
    revised = revise_definition(current, revision)
    session.add(
        StageDefinitionVersion(
            stage=stage.value,
            version=revised.version,
            title=revised.title,
            definition=revised.definition,
            entry_criteria=list(revised.entry_criteria),
            approved_by=revised.approved_by.model_dump(),
            created_at=clock.now(),
        )
    )
    return revised


def _definition(row: StageDefinitionVersion) -> StageDefinition:
    return StageDefinition(
        stage=Stage(row.stage),
        version=row.version,
        title=row.title,
        definition=row.definition,
        entry_criteria=tuple(row.entry_criteria),
        approved_by=row.approved_by,  # type: ignore[arg-type]
    )
