"""Email performance of each sequence per day, with the metric definitions of `engagement.metrics`.

A message belongs to the UTC day its send finished (accepted, or failed for good), so a day's opens
and clicks are those of the messages sent that day, whenever they came; a day's figures therefore
add up to the per-step report's. Messages of erased contacts are left out, because only their
undated counts are kept.
"""

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.sequencer.engagement.metrics import EmailMetrics, MessageEngagement, compute_metrics
from services.sequencer.engagement.models import MessageEvent
from services.sequencer.engagement.report import FINAL_STATES, message_engagement
from services.sequencer.sending.models import SentMessage
from services.sequencer.sequences.models import Sequence


@dataclass(frozen=True)
class SequenceDays:
    sequence_id: str
    name: str
    status: str
    days: dict[date, EmailMetrics]
    totals: EmailMetrics


def _finished_at() -> Any:
    return func.coalesce(col(SentMessage.sent_at), col(SentMessage.failed_at), col(SentMessage.created_at))


def _in_window(query: Any, since: datetime, until: datetime, sequence_id: str | None) -> Any:
    query = query.where(col(SentMessage.state).in_(FINAL_STATES), _finished_at() >= since, _finished_at() < until)
    if sequence_id is not None:
        query = query.where(SentMessage.sequence_id == sequence_id)
    return query


async def daily_performance(
    session: AsyncSession, since: datetime, until: datetime, sequence_id: str | None = None
) -> list[SequenceDays]:
    """Return, per sequence with sends in [since, until), its metrics for every UTC day of the window."""
    message_query = _in_window(
        select(
            SentMessage.message_id, SentMessage.sequence_id, SentMessage.step_id, SentMessage.state,
            SentMessage.status, _finished_at().label("finished_at"),
        ),
        since, until, sequence_id,
    )
    messages = list((await session.exec(message_query)).all())
    hits = await _hits(session, since, until, sequence_id)

    by_sequence: dict[str, dict[date, list[MessageEngagement]]] = defaultdict(lambda: defaultdict(list))
    for message in messages:
        counter = hits.get(message.message_id, Counter())
        engagement = message_engagement(message, counter, {kind for kind, _ in counter})
        by_sequence[message.sequence_id][_utc_day(message.finished_at)].append(engagement)

    wanted = set(by_sequence) | ({sequence_id} if sequence_id is not None else set())
    sequences = (await session.exec(select(Sequence).where(col(Sequence.id).in_(wanted)))).all()
    days = _days(since, until)
    result = []
    for sequence in sorted(sequences, key=lambda item: (item.name, item.id)):
        per_day = by_sequence.get(sequence.id, {})
        result.append(
            SequenceDays(
                sequence_id=sequence.id,
                name=sequence.name,
                status=sequence.status,
                days={day: compute_metrics(per_day.get(day, [])) for day in days},
                totals=compute_metrics([item for items in per_day.values() for item in items]),
            )
        )
    return result


async def _hits(
    session: AsyncSession, since: datetime, until: datetime, sequence_id: str | None
) -> dict[str, Counter[tuple[str, str | None]]]:
    """Count each message's events by type and verdict, in SQL."""
    query = _in_window(
        select(MessageEvent.message_id, MessageEvent.type, MessageEvent.verdict, func.count())
        .join(SentMessage, col(SentMessage.message_id) == col(MessageEvent.message_id))
        .group_by(col(MessageEvent.message_id), col(MessageEvent.type), col(MessageEvent.verdict)),
        since, until, sequence_id,
    )
    hits: dict[str, Counter[tuple[str, str | None]]] = defaultdict(Counter)
    for message_id, kind, verdict, count in (await session.exec(query)).all():
        hits[message_id][(kind, verdict)] += int(count)
    return hits


def _utc_day(value: datetime | str) -> date:
    # SQLite returns coalesce() of timestamps as text, without the column's type conversion.
    instant = datetime.fromisoformat(value) if isinstance(value, str) else value
    return instant.date() if instant.tzinfo is None else instant.astimezone(UTC).date()


def _days(since: datetime, until: datetime) -> list[date]:
    first = since.astimezone(UTC).date()
    last = (until - timedelta(microseconds=1)).astimezone(UTC).date()
    return [first + timedelta(days=offset) for offset in range((last - first).days + 1)]
