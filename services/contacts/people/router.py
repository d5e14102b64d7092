"""Internal routes for contacts: create, upsert by email, list, read and change."""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response
from sqlalchemy import and_, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.contacts.attributes.service import load_definitions
from services.contacts.changes import ContactChanges
from services.contacts.deps import OutboxDep, Session, SettingsDep
from services.contacts.instants import utc_range_problem
from services.contacts.people.email import normalise_email
from services.contacts.people.models import Contact
from services.contacts.people.schemas import ContactIn, ContactOut, ContactPatch, ContactUpsert
from services.contacts.people.service import INITIAL_STAGE, apply_profile, create_contact, find_by_email, get_contact
from services.contacts.people.views import contact_view, contact_views
from services.contacts.publishing import flush_changes
from services.contacts.segments.models import Segment, SegmentMembership
from services.contacts.stages.machine import InvalidReasonError, StageUnchanged, parse_stage
from services.contacts.stages.service import change_stage
from services.kit.outbox import Outbox
from services.kit.pagination import CursorQuery, LimitQuery, Page, decode_time_cursor, encode_cursor
from services.kit.problems import Conflict, invalid

router = APIRouter(tags=["contacts"])

API_ACTOR = "api"
_STAGE_FIELDS = {"email", "stage", "stage_reason", "actor"}


@router.post("/contacts", status_code=201, response_model=ContactOut)
async def create(body: ContactIn, session: Session, outbox: OutboxDep, settings: SettingsDep) -> ContactOut:
    """Create a contact; an address that exists already is a 409 naming the existing id."""
    changes = ContactChanges()
    stage = parse_stage(body.stage).value if body.stage is not None else INITIAL_STAGE
    contact = await create_contact(session, body.email, changes, actor=API_ACTOR, stage=stage)
    profile = body.model_dump(exclude_unset=True, exclude=_STAGE_FIELDS)
    await apply_profile(session, contact, profile, await load_definitions(session), changes)

    await flush_changes(session, outbox, changes, settings)
    await session.commit()
    return await contact_view(session, contact, settings.default_consent)


@router.put("/contacts/by-email/{email:path}", response_model=ContactOut)
async def upsert(
    email: str, body: ContactUpsert, response: Response, session: Session, outbox: OutboxDep, settings: SettingsDep
) -> ContactOut:
    """Create the contact of this address (201) or change the existing one (200)."""
    changes = ContactChanges()
    contact = await find_by_email(session, email)
    profile = body.model_dump(exclude_unset=True, exclude=_STAGE_FIELDS)
    created = False
    if contact is None:
        stage = parse_stage(body.stage).value if body.stage is not None else INITIAL_STAGE
        contact, created = await _create_or_find(session, email, stage, changes)
    if created:
        response.status_code = 201
    elif body.stage is not None:
        await _move_stage(session, outbox, contact, body.stage, changes, reason=body.stage_reason, actor=API_ACTOR)
    await apply_profile(session, contact, profile, await load_definitions(session), changes)

    await flush_changes(session, outbox, changes, settings)
    await session.commit()
    return await contact_view(session, contact, settings.default_consent)


async def _create_or_find(session: AsyncSession, email: str, stage: str, changes: ContactChanges) -> tuple[Contact, bool]:
    """Create the contact of a new address, or find it when a concurrent request created it first."""
    try:
        return await create_contact(session, email, changes, actor=API_ACTOR, stage=stage), True
    except Conflict:
        existing = await find_by_email(session, email)
        if existing is None:
            raise
        return existing, False


@router.get("/contacts", response_model=Page[ContactOut])
async def list_contacts(
    session: Session,
    settings: SettingsDep,
    email: Annotated[str | None, Query(max_length=320)] = None,
    stage: Annotated[str | None, Query(max_length=32)] = None,
    segment_id: Annotated[str | None, Query(max_length=32)] = None,
    updated_since: Annotated[datetime | None, Query(description="Only contacts changed at or after this instant")] = None,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
) -> Page[ContactOut]:
    """List contacts in the order they last changed, oldest change first."""
    query = select(Contact)
    if email is not None:
        query = query.where(Contact.email_key == normalise_email(email).match_key)
    if stage is not None:
        query = query.where(Contact.stage == parse_stage(stage).value)
    if segment_id is not None:
        if await session.get(Segment, segment_id) is None:
            raise invalid("segment_id", f"no segment has the id {segment_id!r}")
        members = select(SegmentMembership.contact_id).where(SegmentMembership.segment_id == segment_id)
        query = query.where(col(Contact.id).in_(members))
    if updated_since is not None:
        if updated_since.tzinfo is None:
            raise invalid("updated_since", "needs a UTC offset, e.g. 2024-05-01T10:00:00Z")
        problem = utc_range_problem(updated_since)
        if problem is not None:
            raise invalid("updated_since", problem)
        query = query.where(Contact.updated_at >= updated_since)
    if cursor:
        after, contact_id = decode_time_cursor(cursor)
        query = query.where(
            or_(col(Contact.updated_at) > after, and_(col(Contact.updated_at) == after, col(Contact.id) > contact_id))
        )

    query = query.order_by(col(Contact.updated_at), col(Contact.id)).limit(limit)
    contacts = list((await session.exec(query)).all())
    next_cursor = encode_cursor(contacts[-1].updated_at.isoformat(), contacts[-1].id) if len(contacts) == limit else None
    return Page[ContactOut](items=await contact_views(session, contacts, settings.default_consent), next_cursor=next_cursor)


@router.get("/contacts/{contact_id}", response_model=ContactOut)
async def read(contact_id: str, session: Session, settings: SettingsDep) -> ContactOut:
    """Read one contact with its company and consent."""
    return await contact_view(session, await get_contact(session, contact_id), settings.default_consent)


@router.patch("/contacts/{contact_id}", response_model=ContactOut)
async def patch(contact_id: str, body: ContactPatch, session: Session, outbox: OutboxDep, settings: SettingsDep) -> ContactOut:
    """Change the fields sent; a stage move here only goes forward (409 otherwise, with no history entry)."""
    changes = ContactChanges()
    contact = await get_contact(session, contact_id)
    values = body.model_dump(exclude_unset=True, exclude=_STAGE_FIELDS - {"email"})
    if body.stage is not None:
        await _move_stage(session, outbox, contact, body.stage, changes, reason=body.stage_reason, actor=body.actor or API_ACTOR)
    await apply_profile(session, contact, values, await load_definitions(session), changes)

    await flush_changes(session, outbox, changes, settings)
    await session.commit()
    return await contact_view(session, contact, settings.default_consent)


async def _move_stage(
    session: AsyncSession, outbox: Outbox, contact: Contact, stage: str, changes: ContactChanges, *, reason: str | None, actor: str
) -> None:
    try:
        await change_stage(session, outbox, contact, stage, changes, reason=reason, actor=actor)
    except StageUnchanged:
        # Setting the stage a contact already has is not a change, so PATCH stays idempotent.
        return
    except InvalidReasonError as error:
        # These bodies call the reason `stage_reason`; the stage route's body calls it `reason`.
        raise invalid("stage_reason", error.detail) from None
