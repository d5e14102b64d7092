"""Reading engagement back for branch conditions."""

from collections import defaultdict

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.sequencer.engagement.models import MessageEvent
from services.sequencer.sending.models import SentMessage

_ACTIONS = {"opened": "opened", "clicked": "clicked"}


async def human_actions_by_step(session: AsyncSession, enrolment_id: str) -> dict[str, set[str]]:
    """Return, per email step of the enrolment, the human actions seen on its message (opened, clicked)."""
    query = (
        select(SentMessage.step_id, MessageEvent.type)
        .join(MessageEvent, col(MessageEvent.message_id) == col(SentMessage.message_id))
        .where(SentMessage.enrolment_id == enrolment_id)
        .where(col(MessageEvent.type).in_(_ACTIONS))
        .where(MessageEvent.verdict == "human")
    )
    actions: dict[str, set[str]] = defaultdict(set)
    for step_id, kind in (await session.exec(query)).all():
        actions[step_id].add(_ACTIONS[kind])
    return dict(actions)
