"""The SQL behind the nurturing reports: aggregates only, so a report reads a few dozen rows.

See `figures` for what each number means. Every query works on PostgreSQL and SQLite (3.25 or
later, for window functions).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, func, literal, or_, select
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from services.contacts.people.models import Contact
from services.contacts.privacy.models import ContactTombstone
from services.contacts.reports.figures import (
    NURTURE_EVENT_TYPE,
    PERCENTILE_TENTHS,
    funnel_rank,
    interpolate,
    percentile_ranks,
)
from services.contacts.segments.json_sql import json_sql
from services.contacts.stages.machine import FUNNEL, Stage
from services.contacts.stages.models import StageChange
from services.contacts.timeline.models import TimelineEvent


@dataclass(frozen=True)
class Window:
    """The cohort of contacts created in [since, until); None on a side leaves it open."""

    since: datetime | None = None
    until: datetime | None = None

    @property
    def given(self) -> bool:
        return self.since is not None or self.until is not None

    def bounds(self, column: Any) -> list[ColumnElement[bool]]:
        conditions = []
        if self.since is not None:
            conditions.append(column >= self.since)
        if self.until is not None:
            conditions.append(column < self.until)
        return conditions


def _rank_of(stage_column: Any) -> Any:
    """Return the funnel rank of a stage column as SQL, NULL for disqualified."""
    return case({stage.value: funnel_rank(stage) for stage in FUNNEL}, value=stage_column, else_=None)


def _cohort(window: Window) -> Any:
    """Select the ids of the contacts in the window's cohort."""
    return select(Contact.id).where(*window.bounds(col(Contact.created_at)))


def _history(window: Window) -> Any:
    query = select(StageChange.contact_id, StageChange.to_stage, StageChange.at)
    if window.given:
        query = query.where(col(StageChange.contact_id).in_(_cohort(window)))
    return query.subquery("history")


@dataclass(frozen=True)
class FunnelCounts:
    current: dict[str, int]
    furthest: dict[int, int]
    disqualified: int
    tombstones: dict[str, int]


async def funnel_counts(session: AsyncSession, window: Window) -> FunnelCounts:
    """Count contacts per current stage, per furthest funnel rank reached, and tombstones per stage."""
    current_query = select(Contact.stage, func.count()).where(*window.bounds(col(Contact.created_at))).group_by(col(Contact.stage))
    current = {stage: int(count) for stage, count in (await session.exec(current_query)).all()}

    history = _history(window)
    per_contact = (
        select(
            func.max(_rank_of(history.c.to_stage)).label("furthest"),
            func.max(case((history.c.to_stage == Stage.DISQUALIFIED.value, 1), else_=0)).label("disqualified"),
        )
        .group_by(history.c.contact_id)
        .subquery("per_contact")
    )
    reach_query = select(per_contact.c.furthest, per_contact.c.disqualified, func.count()).group_by(
        per_contact.c.furthest, per_contact.c.disqualified
    )
    furthest: dict[int, int] = defaultdict(int)
    disqualified = 0
    for rank, was_disqualified, count in (await session.exec(reach_query)).all():  # type: ignore[call-overload]
        if rank is not None:
            furthest[int(rank)] += int(count)
        if was_disqualified:
            disqualified += int(count)

    tombstone_query = select(ContactTombstone.stage, func.count()).group_by(col(ContactTombstone.stage))
    tombstones = {stage: int(count) for stage, count in (await session.exec(tombstone_query)).all()}
    return FunnelCounts(current=current, furthest=dict(furthest), disqualified=disqualified, tombstones=tombstones)


@dataclass(frozen=True)
class StageDurations:
    """Per stage: completed and open stays, and the percentile values in seconds."""

    completed: dict[str, int]
    open: dict[str, int]
    percentiles: dict[str, dict[str, float]]


def _seconds_between(dialect: str, start: Any, end: Any) -> Any:
    if dialect == "postgresql":
        return func.date_part("epoch", end - start)
    # SQLite keeps UTC timestamps as text, which julianday() reads as days, so 86,400 seconds each.
    return (func.julianday(end) - func.julianday(start)) * 86400.0


def _stays(dialect: str, window: Window) -> Any:
    """Select every stay: its stage, when it began and, once it has ended, how many seconds it lasted."""
    table = StageChange.__table__  # type: ignore[attr-defined]
    left_at = func.lead(table.c.at).over(partition_by=table.c.contact_id, order_by=(table.c.at, table.c.id))
    ordered = select(table.c.to_stage.label("stage"), table.c.at, left_at.label("left_at")).subquery("ordered")
    seconds = case((ordered.c.left_at.is_(None), None), else_=_seconds_between(dialect, ordered.c.at, ordered.c.left_at))
    query = select(ordered.c.stage, seconds.label("seconds")).where(*window.bounds(ordered.c.at))
    return query.cte("stays")


async def stage_durations(session: AsyncSession, window: Window) -> StageDurations:
    """Count the stays per stage and pick, with window functions, the rows around each percentile.

    One statement reads the stays once: the completed stays ranked by length, of which only the
    rows at the percentiles' ranks come back, and the number of open stays per stage.
    """
    dialect = session.bind.dialect.name  # type: ignore[union-attr]
    stays = _stays(dialect, window)
    ranked = (
        select(
            stays.c.stage,
            stays.c.seconds,
            (func.row_number().over(partition_by=stays.c.stage, order_by=stays.c.seconds) - 1).label("rank"),
            func.count().over(partition_by=stays.c.stage).label("completed"),
        )
        .where(stays.c.seconds.is_not(None))
        .subquery("ranked")
    )
    at_percentiles = []
    for tenths in PERCENTILE_TENTHS.values():
        lower = (ranked.c.completed - 1) * tenths // 10
        at_percentiles.extend((ranked.c.rank == lower, ranked.c.rank == lower + 1))
    picks = select(literal("completed").label("kind"), ranked.c.stage, ranked.c.completed, ranked.c.rank, ranked.c.seconds).where(
        or_(*at_percentiles)
    )
    open_stays = (
        select(literal("open").label("kind"), stays.c.stage, func.count(), literal(None), literal(None))
        .where(stays.c.seconds.is_(None))
        .group_by(stays.c.stage)
    )

    completed: dict[str, int] = {}
    still_open: dict[str, int] = {}
    values: dict[str, dict[int, float]] = defaultdict(dict)
    for kind, stage, count, rank, seconds in (await session.exec(picks.union_all(open_stays))).all():  # type: ignore[call-overload]
        if kind == "open":
            still_open[stage] = int(count)
        else:
            completed[stage] = int(count)
            values[stage][int(rank)] = float(seconds)
    return StageDurations(completed, still_open, _percentiles(completed, values))


def _percentiles(completed: dict[str, int], values: dict[str, dict[int, float]]) -> dict[str, dict[str, float]]:
    result: dict[str, dict[str, float]] = {}
    for stage, by_rank in values.items():
        result[stage] = {}
        for name, tenths in PERCENTILE_TENTHS.items():
            lower, upper, fraction = percentile_ranks(completed[stage], tenths)
            result[stage][name] = interpolate(by_rank[lower], by_rank[upper], fraction)
    return result


@dataclass(frozen=True)
class NurtureCounts:
    """Leads and customers, split by whether a sequence emailed them first."""

    leads: dict[bool, int]
    customers: dict[bool, int]
    erased_leads: int


async def nurture_counts(session: AsyncSession, window: Window) -> NurtureCounts:
    """Count leads and customers among nurtured and not nurtured contacts, in one aggregate query."""
    dialect = session.bind.dialect.name  # type: ignore[union-attr]
    history = _history(window)
    per_contact = (
        select(
            history.c.contact_id,
            func.max(_rank_of(history.c.to_stage)).label("furthest"),
            func.min(case((history.c.to_stage == Stage.CUSTOMER.value, history.c.at), else_=None)).label("customer_at"),
        )
        .group_by(history.c.contact_id)
        .subquery("per_contact")
    )
    emails = (
        select(TimelineEvent.contact_id, func.min(TimelineEvent.occurred_at).label("first_at"))
        .where(TimelineEvent.type == NURTURE_EVENT_TYPE)
        .where(json_sql(dialect).present(col(TimelineEvent.properties), ["sequence_id"]))
        .group_by(col(TimelineEvent.contact_id))
        .subquery("emails")
    )
    nurtured = case(
        (
            and_(
                emails.c.first_at.is_not(None),
                or_(per_contact.c.customer_at.is_(None), emails.c.first_at < per_contact.c.customer_at),
            ),
            1,
        ),
        else_=0,
    ).label("nurtured")
    customer = case((per_contact.c.customer_at.is_not(None), 1), else_=0).label("customer")
    query = (
        select(nurtured, customer, func.count())
        .select_from(per_contact.outerjoin(emails, emails.c.contact_id == per_contact.c.contact_id))
        .where(per_contact.c.furthest >= literal(funnel_rank(Stage.LEAD)))
        .group_by(nurtured, customer)
    )
    leads = {True: 0, False: 0}
    customers = {True: 0, False: 0}
    for was_nurtured, became_customer, count in (await session.exec(query)).all():  # type: ignore[call-overload]
        leads[bool(was_nurtured)] += int(count)
        if became_customer:
            customers[bool(was_nurtured)] += int(count)

    later_stages = [stage.value for stage in FUNNEL if funnel_rank(stage) >= funnel_rank(Stage.LEAD)]
    erased_query = select(func.count()).where(col(ContactTombstone.stage).in_(later_stages))
    erased_leads = int(await session.scalar(erased_query) or 0)
    return NurtureCounts(leads=leads, customers=customers, erased_leads=erased_leads)
