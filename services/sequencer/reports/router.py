"""Internal route of the per-day email performance; the gateway serves it as /v1/reports/sequence-performance."""

from datetime import date, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field
from sqlmodel.ext.asyncio.session import AsyncSession

from services.kit import clock
from services.kit.app import get_session
from services.kit.problems import invalid
from services.sequencer.engagement.metrics import EmailMetrics
from services.sequencer.reports.daily import daily_performance
from services.sequencer.sequences.store import get_sequence

router = APIRouter(prefix="/reports", tags=["reports"])

Session = Annotated[AsyncSession, Depends(get_session)]
DEFAULT_SPAN = timedelta(days=30)
MAX_SPAN = timedelta(days=366)


class DayMetrics(BaseModel):
    """Email metrics of the messages sent on one UTC day; rates are null on a zero denominator."""

    day: date | None = Field(default=None, description="The UTC day; null for the window's totals")
    sent: int
    delivered: int
    bounces: int
    total_opens: int
    unique_opens: int
    machine_opens: int
    total_clicks: int
    unique_clicks: int
    bot_clicks: int
    unsubscribes: int
    complaints: int
    open_rate: float | None
    click_rate: float | None
    click_to_open: float | None
    bounce_rate: float | None
    unsubscribe_rate: float | None


class SequencePerformance(BaseModel):
    sequence_id: str
    name: str
    status: str
    days: list[DayMetrics]
    totals: DayMetrics


class PerformanceReport(BaseModel):
    since: datetime
    until: datetime
    generated_at: datetime
    sequences: list[SequencePerformance]


@router.get("/sequence-performance", response_model=PerformanceReport)
async def sequence_performance(
    session: Session,
    since: Annotated[datetime | None, Query(description="Start, with a UTC offset; default 30 days before until")] = None,
    until: Annotated[datetime | None, Query(description="End (exclusive), with a UTC offset; default now")] = None,
    sequence_id: Annotated[str | None, Query(max_length=40, description="Only this sequence")] = None,
) -> PerformanceReport:
    """Report sent, delivered, opens and clicks per UTC day for each sequence that sent email in the window."""
    now = clock.now()
    start, end = _window(since, until, now)
    if sequence_id is not None:
        await get_sequence(session, sequence_id)

    sequences = await daily_performance(session, start, end, sequence_id)
    return PerformanceReport(
        since=start,
        until=end,
        generated_at=now,
        sequences=[
            SequencePerformance(
                sequence_id=item.sequence_id,
                name=item.name,
                status=item.status,
                days=[_day(metrics, day) for day, metrics in item.days.items()],
                totals=_day(item.totals, None),
            )
            for item in sequences
        ],
    )


def _window(since: datetime | None, until: datetime | None, now: datetime) -> tuple[datetime, datetime]:
    for field, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise invalid(field, f"{value.isoformat()} has no UTC offset; add one, such as 2025-01-31T00:00:00Z")
    end = until or now
    start = since or end - DEFAULT_SPAN
    if start >= end:
        raise invalid("until", f"until ({end.isoformat()}) must be later than since ({start.isoformat()})")
    if end - start > MAX_SPAN:
        raise invalid("since", f"the window spans {(end - start).days} days, more than the maximum of {MAX_SPAN.days}")
    return start, end


def _day(metrics: EmailMetrics, day: date | None) -> DayMetrics:
    return DayMetrics(day=day, **vars(metrics))
