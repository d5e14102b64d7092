"""Public routes for the nurturing reports: funnel, stage times, nurture impact, email and score charts."""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from services.contacts.reports.schemas import FunnelReport, NurtureImpactReport, StageTimesReport
from services.gateway.keys.auth import require_scope
from services.gateway.routes.forward import forward
from services.gateway.routes.json_body import StrictJsonRoute
from services.scoring.reports.router import MODEL_PATTERN, ScoreDistribution
from services.sequencer.reports.router import PerformanceReport

router = APIRouter(prefix="/v1", tags=["reports"], route_class=StrictJsonRoute)

ReadReports = Annotated[object, Depends(require_scope("reports:read"))]
Since = Annotated[datetime | None, Query(description="Only contacts created at or after this instant (ISO 8601 with a UTC offset)")]
Until = Annotated[datetime | None, Query(description="Only contacts created before this instant (ISO 8601 with a UTC offset)")]


def _window(since: datetime | None, until: datetime | None) -> dict[str, str | None]:
    return {
        "since": since.isoformat() if since is not None else None,
        "until": until.isoformat() if until is not None else None,
    }


@router.get("/reports/funnel", response_model=FunnelReport)
async def funnel(request: Request, _: ReadReports, since: Since = None, until: Until = None) -> Response:
    """Count contacts per stage (erased ones through their tombstone) and the conversion between stages.

    `reached` counts the contacts that reached a stage or a later funnel stage; each conversion is
    reached[next] / reached[stage], null when no contact reached the stage. `mql_to_sql_rate` is the
    conversion from mql to sql.
    """
    return await forward(request, "contacts", "GET", "/reports/funnel", params=_window(since, until))


@router.get("/reports/stage-times", response_model=StageTimesReport)
async def stage_times(request: Request, _: ReadReports, since: Since = None, until: Until = None) -> Response:
    """Report the median and 90th percentile time spent in each stage, in seconds.

    Only completed stays count; stays still open are counted in `open_stays`. With a window, only
    the stays that began in it count.
    """
    return await forward(request, "contacts", "GET", "/reports/stage-times", params=_window(since, until))


@router.get("/reports/nurture-impact", response_model=NurtureImpactReport)
async def nurture_impact(request: Request, _: ReadReports, since: Since = None, until: Until = None) -> Response:
    """Compare the share of leads that became customers among nurtured and not nurtured leads.

    A lead is nurtured when a sequence emailed it before it became a customer.
    """
    return await forward(request, "contacts", "GET", "/reports/nurture-impact", params=_window(since, until))


@router.get("/reports/sequence-performance", response_model=PerformanceReport)
async def sequence_performance(
    request: Request,
    _: ReadReports,
    since: Annotated[datetime | None, Query(description="Start (ISO 8601 with a UTC offset); default 30 days before until")] = None,
    until: Annotated[datetime | None, Query(description="End, exclusive; default now")] = None,
    sequence_id: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    """Report each sequence's sent, delivered, opens and clicks per UTC day of its messages' sends."""
    params = {**_window(since, until), "sequence_id": sequence_id}
    return await forward(request, "sequencer", "GET", "/reports/sequence-performance", params=params)


@router.get("/reports/score-distribution", response_model=ScoreDistribution)
async def score_distribution(
    request: Request,
    _: ReadReports,
    model: Annotated[str, Query(pattern=MODEL_PATTERN)] = "default",
    bins: Annotated[int, Query(ge=1, le=50)] = 10,
) -> Response:
    """Count the contacts' stored scores under one model into equal-width bins."""
    return await forward(request, "scoring", "GET", "/reports/score-distribution", params={"model": model, "bins": bins})
