"""The worker's periodic re-evaluation of segments whose rolling windows may have moved past an event."""

from typing import Any

from sqlmodel import col, select

from services.contacts.attributes.service import load_definitions
from services.contacts.segments.membership import dialect_of, refresh_segment
from services.contacts.segments.models import Segment
from services.kit import clock
from services.kit.logging import get_logger

log = get_logger(__name__)


async def recheck_segment_windows(ctx: dict[str, Any]) -> int:
    """Re-evaluate every segment whose window check is due by the platform clock; return how many ran.

    Each segment runs in its own transaction. On PostgreSQL the segment row is locked with SKIP
    LOCKED, so two workers never evaluate the same segment at once.
    """
    db, outbox, settings = ctx["db"], ctx["outbox"], ctx["settings"]
    now = clock.now()
    async with db.session() as session:
        query = select(Segment.id).where(col(Segment.next_window_check_at) <= now)
        due = list((await session.exec(query.order_by(col(Segment.next_window_check_at)))).all())

    for segment_id in due:
        async with db.session() as session:
            query = select(Segment).where(Segment.id == segment_id, col(Segment.next_window_check_at) <= now)
            if dialect_of(session) == "postgresql":
                query = query.with_for_update(skip_locked=True)
            segment = (await session.exec(query)).first()
            if segment is None:
                continue
            entered, left = await refresh_segment(session, outbox, segment, await load_definitions(session), settings)
            await session.commit()
            log.info("segment.windows_rechecked", segment_id=segment_id, entered=len(entered), left=len(left))
    return len(due)
