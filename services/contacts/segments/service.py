"""Creating segments and reading their members."""

import uuid
from typing import Any

from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.contacts.attributes.service import load_definitions
from services.contacts.segments.membership import refresh_segment
from services.contacts.segments.models import Segment, SegmentMembership
from services.contacts.segments.validation import FilterValidationError, dump_filter, parse_filter
from services.contacts.segments.windows import filter_dependencies, time_windows
from services.contacts.settings import ContactsSettings
from services.kit import clock
from services.kit.outbox import Outbox
from services.kit.problems import NotFound, Unprocessable, field_error


async def create_segment(
    session: AsyncSession, outbox: Outbox, name: str, raw_filter: Any, settings: ContactsSettings
) -> tuple[Segment, int]:
    """Validate the filter, store the segment, evaluate its members (not committed); return it and their count.

    An invalid filter is a 422 whose errors name each bad part by its path, such as
    `filter.all[1].within_days`.
    """
    definitions = await load_definitions(session)
    try:
        node = parse_filter(raw_filter, attributes=definitions)
    except FilterValidationError as error:
        errors = [field_error(issue.path, issue.message) for issue in error.issues]
        raise Unprocessable(f"invalid filter: {error}", errors=errors) from None

    dependencies = filter_dependencies(node)
    now = clock.now()
    segment = Segment(
        id=uuid.uuid4().hex,
        name=name,
        filter=dump_filter(node),
        fields=sorted(dependencies.fields),
        event_types=sorted(dependencies.event_types),
        windows=[{"event": window.event, "days": window.days} for window in time_windows(node)],
        created_at=now,
        updated_at=now,
    )
    session.add(segment)
    entered, _ = await refresh_segment(session, outbox, segment, definitions, settings)
    return segment, len(entered)


async def get_segment(session: AsyncSession, segment_id: str) -> Segment:
    segment = await session.get(Segment, segment_id)
    if segment is None:
        raise NotFound(f"segment {segment_id} not found", segment_id=segment_id)
    return segment


async def member_count(session: AsyncSession, segment_id: str) -> int:
    query = select(func.count()).select_from(SegmentMembership).where(SegmentMembership.segment_id == segment_id)
    return int((await session.exec(query)).one())


async def members_page(
    session: AsyncSession, segment_id: str, *, limit: int, after: str | None
) -> list[SegmentMembership]:
    query = select(SegmentMembership).where(SegmentMembership.segment_id == segment_id)
    if after is not None:
        query = query.where(col(SegmentMembership.contact_id) > after)
    return list((await session.exec(query.order_by(col(SegmentMembership.contact_id)).limit(limit))).all())
