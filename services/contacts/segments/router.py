"""Internal routes for segments and their members."""

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import col, select

from services.contacts.deps import OutboxDep, Session, SettingsDep
from services.contacts.people.models import Contact
from services.contacts.people.schemas import ContactOut
from services.contacts.people.views import contact_views
from services.contacts.segments.models import Segment
from services.contacts.segments.service import create_segment, get_segment, member_count, members_page
from services.kit.pagination import CursorQuery, LimitQuery, Page, decode_cursor, encode_cursor

router = APIRouter(tags=["segments"])


class SegmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    filter: dict[str, Any] = Field(
        description="all/any/not of attribute conditions {field, op, value} and behaviour conditions "
        "{event, where, at_least, at_most, within_days | between}",
        examples=[
            {
                "all": [
                    {"field": "company.industry", "op": "eq", "value": "SaaS"},
                    {"event": "page_view", "where": [{"property": "url", "op": "contains", "value": "/pricing"}], "within_days": 14},
                ]
            }
        ],
    )


class SegmentOut(BaseModel):
    id: str
    name: str
    filter: dict[str, Any]
    members: int
    next_window_check_at: datetime | None
    created_at: datetime


class MemberOut(ContactOut):
    entered_at: datetime


@router.post("/segments", status_code=201, response_model=SegmentOut)
async def post_segment(body: SegmentIn, session: Session, outbox: OutboxDep, settings: SettingsDep) -> SegmentOut:
    """Create a segment and evaluate its members; an invalid filter is a 422 naming the bad part."""
    segment, members = await create_segment(session, outbox, body.name, body.filter, settings)
    await session.commit()
    return _out(segment, members)


@router.get("/segments", response_model=Page[SegmentOut])
async def list_segments(session: Session, limit: LimitQuery = 50, cursor: CursorQuery = None) -> Page[SegmentOut]:
    """List segments by id."""
    query = select(Segment)
    if cursor:
        query = query.where(col(Segment.id) > str(decode_cursor(cursor, arity=1)[0]))
    segments = list((await session.exec(query.order_by(col(Segment.id)).limit(limit))).all())
    items = [_out(segment, await member_count(session, segment.id)) for segment in segments]
    next_cursor = encode_cursor(segments[-1].id) if len(segments) == limit else None
    return Page[SegmentOut](items=items, next_cursor=next_cursor)


@router.get("/segments/{segment_id}", response_model=SegmentOut)
async def read_segment(segment_id: str, session: Session) -> SegmentOut:
    """Read one segment with its current number of members."""
    segment = await get_segment(session, segment_id)
    return _out(segment, await member_count(session, segment_id))


@router.get("/segments/{segment_id}/contacts", response_model=Page[MemberOut])
async def read_members(
    segment_id: str, session: Session, settings: SettingsDep, limit: LimitQuery = 50, cursor: CursorQuery = None
) -> Page[MemberOut]:
    """List the current members of a segment, with when each entered."""
    await get_segment(session, segment_id)
    after = str(decode_cursor(cursor, arity=1)[0]) if cursor else None
    memberships = await members_page(session, segment_id, limit=limit, after=after)
    ids = [membership.contact_id for membership in memberships]
    contacts = {row.id: row for row in (await session.exec(select(Contact).where(col(Contact.id).in_(ids)))).all()}
    views = {view.id: view for view in await contact_views(session, list(contacts.values()), settings.default_consent)}
    items = [
        MemberOut(**views[membership.contact_id].model_dump(), entered_at=membership.entered_at)
        for membership in memberships
        if membership.contact_id in views
    ]
    next_cursor = encode_cursor(ids[-1]) if len(ids) == limit else None
    return Page[MemberOut](items=items, next_cursor=next_cursor)


def _out(segment: Segment, members: int) -> SegmentOut:
    return SegmentOut(
        id=segment.id,
        name=segment.name,
        filter=segment.filter,
        members=members,
        next_window_check_at=segment.next_window_check_at,
        created_at=segment.created_at,
    )
