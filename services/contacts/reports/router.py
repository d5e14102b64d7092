"""Internal routes of the nurturing reports; the gateway serves them as /v1/reports/..."""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from services.contacts.deps import Session
from services.contacts.instants import utc_range_problem
from services.contacts.reports.figures import rate, reached_by_stage
from services.contacts.reports.queries import Window, funnel_counts, nurture_counts, stage_durations
from services.contacts.reports.schemas import (
    Conversion,
    FunnelReport,
    NurtureGroup,
    NurtureImpactReport,
    StageCount,
    StageTime,
    StageTimesReport,
)
from services.contacts.stages.machine import FUNNEL, Stage
from services.kit import clock
from services.kit.problems import invalid

router = APIRouter(prefix="/reports", tags=["reports"])


def report_window(
    since: Annotated[datetime | None, Query(description="ISO 8601 instant with a UTC offset")] = None,
    until: Annotated[datetime | None, Query(description="ISO 8601 instant with a UTC offset")] = None,
) -> Window:
    """Read the report window, rejecting instants without an offset or a UTC form, and empty windows."""
    for field, value in (("since", since), ("until", until)):
        if value is None:
            continue
        if value.tzinfo is None:
            raise invalid(field, f"{value.isoformat()} has no UTC offset; add one, such as 2025-01-31T00:00:00Z")
        problem = utc_range_problem(value)
        if problem is not None:
            raise invalid(field, problem)
    if since is not None and until is not None and since >= until:
        raise invalid("until", f"until ({until.isoformat()}) must be later than since ({since.isoformat()})")
    return Window(since=since, until=until)


WindowDep = Annotated[Window, Depends(report_window)]


@router.get("/funnel", response_model=FunnelReport, response_model_by_alias=True)
async def funnel(session: Session, window: WindowDep) -> FunnelReport:
    """Count contacts per stage and the conversion between consecutive funnel stages."""
    counts = await funnel_counts(session, window)
    tombstones = {} if window.given else counts.tombstones
    current = {stage: counts.current.get(stage.value, 0) + tombstones.get(stage.value, 0) for stage in Stage}
    furthest = dict(counts.furthest)
    for stage in FUNNEL:
        furthest[FUNNEL.index(stage)] = furthest.get(FUNNEL.index(stage), 0) + tombstones.get(stage.value, 0)
    reached = reached_by_stage(furthest, counts.disqualified + tombstones.get(Stage.DISQUALIFIED.value, 0))

    conversions = [
        Conversion(
            from_stage=stage.value,
            to_stage=following.value,
            reached_from=reached[stage],
            reached_to=reached[following],
            rate=rate(reached[following], reached[stage]),
        )
        for stage, following in zip(FUNNEL, FUNNEL[1:], strict=False)
    ]
    mql_to_sql = next(item.rate for item in conversions if item.from_stage == Stage.MQL.value)
    erased = sum(tombstones.values())
    return FunnelReport(
        since=window.since,
        until=window.until,
        generated_at=clock.now(),
        contacts=sum(current.values()),
        erased=erased,
        erased_left_out=sum(counts.tombstones.values()) - erased,
        stages=[StageCount(stage=stage.value, current=current[stage], reached=reached[stage]) for stage in Stage],
        conversions=conversions,
        mql_to_sql_rate=mql_to_sql,
    )


@router.get("/stage-times", response_model=StageTimesReport)
async def stage_times(session: Session, window: WindowDep) -> StageTimesReport:
    """Report the median and 90th percentile of completed stays in each stage, in seconds."""
    durations = await stage_durations(session, window)
    stages = []
    for stage in Stage:
        percentiles = durations.percentiles.get(stage.value, {})
        stages.append(
            StageTime(
                stage=stage.value,
                completed_stays=durations.completed.get(stage.value, 0),
                open_stays=durations.open.get(stage.value, 0),
                median_seconds=_rounded(percentiles.get("median")),
                p90_seconds=_rounded(percentiles.get("p90")),
            )
        )
    return StageTimesReport(since=window.since, until=window.until, generated_at=clock.now(), stages=stages)


@router.get("/nurture-impact", response_model=NurtureImpactReport)
async def nurture_impact(session: Session, window: WindowDep) -> NurtureImpactReport:
    """Compare the share of leads that became customers with and without a sequence's emails."""
    counts = await nurture_counts(session, window)
    nurtured = _group(counts.leads[True], counts.customers[True])
    not_nurtured = _group(counts.leads[False], counts.customers[False])
    difference = None
    if nurtured.conversion_rate is not None and not_nurtured.conversion_rate is not None:
        difference = nurtured.conversion_rate - not_nurtured.conversion_rate
    return NurtureImpactReport(
        since=window.since,
        until=window.until,
        generated_at=clock.now(),
        nurtured=nurtured,
        not_nurtured=not_nurtured,
        rate_difference=difference,
        erased_left_out=counts.erased_leads,
    )


def _group(leads: int, customers: int) -> NurtureGroup:
    return NurtureGroup(leads=leads, customers=customers, conversion_rate=rate(customers, leads))


def _rounded(seconds: float | None) -> float | None:
    # Millisecond precision: SQLite's julianday() arithmetic carries about ten microseconds of error.
    return None if seconds is None else round(seconds, 3)
