"""Internal routes for stage definitions, stage moves and the stage history."""

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import IntegrityError

from services.contacts.changes import ContactChanges
from services.contacts.deps import OutboxDep, Session, SettingsDep
from services.contacts.people.service import get_contact
from services.contacts.publishing import flush_changes
from services.contacts.stages.definitions import StageDefinition, StageDefinitionRevision
from services.contacts.stages.machine import MAX_ACTOR_LENGTH, MAX_REASON_LENGTH, parse_stage
from services.contacts.stages.models import StageChange
from services.contacts.stages.service import change_stage, current_definitions, revise_stage, stage_history
from services.kit.pagination import CursorQuery, LimitQuery, Page, decode_int_cursor, encode_cursor
from services.kit.problems import Conflict

router = APIRouter(tags=["stages"])

DEFAULT_ACTOR = "api"


class StageMoveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stage: str = Field(max_length=32, description="Target stage; names ignore case")
    reason: str | None = Field(default=None, max_length=MAX_REASON_LENGTH * 2)
    actor: str | None = Field(
        default=None, max_length=MAX_ACTOR_LENGTH * 2, description="Who moves it, such as sales:jane@example.com; default api"
    )
    allow_regression: bool = Field(default=False, description="Allow a backward move; a reason is then required")


class StageChangeOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    contact_id: str
    from_stage: str | None = Field(serialization_alias="from")
    to_stage: str = Field(serialization_alias="to")
    kind: str
    at: datetime
    reason: str | None
    actor: str


class StagesOut(BaseModel):
    items: list[StageDefinition]


@router.get("/stages", response_model=StagesOut)
async def get_stages(session: Session) -> StagesOut:
    """List the newest definition of every stage, in funnel order with disqualified last."""
    return StagesOut(items=await current_definitions(session))


@router.put("/stages/{stage}", response_model=StageDefinition)
async def put_stage(stage: str, body: StageDefinitionRevision, session: Session) -> StageDefinition:
    """Store a new version of one stage's definition."""
    revised = await revise_stage(session, parse_stage(stage), body)
    try:
        await session.commit()
    except IntegrityError:
        raise Conflict(f"another version {revised.version} of {revised.stage.value} was stored at the same time; read it and retry") from None
    return revised


@router.post("/contacts/{contact_id}/stage", response_model=StageChangeOut, response_model_by_alias=True)
async def move_stage(
    contact_id: str, body: StageMoveIn, session: Session, outbox: OutboxDep, settings: SettingsDep
) -> StageChangeOut:
    """Move a contact's stage under the transition rules; 409 for a forbidden move, 422 for a missing reason."""
    contact = await get_contact(session, contact_id)
    changes = ContactChanges()
    entry = await change_stage(
        session, outbox, contact, body.stage, changes,
        reason=body.reason, actor=body.actor or DEFAULT_ACTOR, allow_regression=body.allow_regression,
    )
    await flush_changes(session, outbox, changes, settings)
    await session.commit()
    return _out(entry)


@router.get("/contacts/{contact_id}/stage-history", response_model=Page[StageChangeOut], response_model_by_alias=True)
async def get_stage_history(
    contact_id: str, session: Session, limit: LimitQuery = 50, cursor: CursorQuery = None
) -> Page[StageChangeOut]:
    """List every stage the contact has been in, oldest first, with from, to, at, reason and actor."""
    await get_contact(session, contact_id)
    after_id = decode_int_cursor(cursor) if cursor else None
    entries = await stage_history(session, contact_id, limit=limit, after_id=after_id)
    next_cursor = encode_cursor(entries[-1].id) if len(entries) == limit else None
    return Page[StageChangeOut](items=[_out(entry) for entry in entries], next_cursor=next_cursor)


def _out(entry: StageChange) -> StageChangeOut:
    return StageChangeOut(
        contact_id=entry.contact_id,
        from_stage=entry.from_stage,
        to_stage=entry.to_stage,
        kind=entry.kind,
        at=entry.at,
        reason=entry.reason,
        actor=entry.actor,
    )
