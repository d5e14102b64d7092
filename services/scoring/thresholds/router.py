"""Internal routes for score thresholds and their firings."""

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlmodel.ext.asyncio.session import AsyncSession

from services.kit.app import get_session
from services.kit.pagination import CursorQuery, LimitQuery, decode_cursor, encode_cursor
from services.kit.problems import invalid
from services.scoring.jobs.router import job_out
from services.scoring.jobs.service import enqueue
from services.scoring.schemas import NAME_PATTERN, FiringOut, FiringPage, ThresholdIn, ThresholdOut, ThresholdPage, ThresholdSaved
from services.scoring.thresholds.models import ScoreThreshold
from services.scoring.thresholds.service import (
    delete_threshold,
    firing_counts,
    get_threshold,
    list_firings,
    list_thresholds,
    put_threshold,
)
from services.scoring.thresholds.triggers import threshold_trigger_key

router = APIRouter(prefix="/scoring/thresholds", tags=["score thresholds"])

Session = Annotated[AsyncSession, Depends(get_session)]
ThresholdName = Annotated[str, Path(pattern=NAME_PATTERN, description="letters, digits, _ . and -, at most 64")]


def threshold_out(threshold: ScoreThreshold, firings: int) -> ThresholdOut:
    return ThresholdOut(**threshold.model_dump(exclude={"name"}), name=threshold.name, firings=firings)


@router.get("", response_model=ThresholdPage)
async def read_thresholds(session: Session, limit: LimitQuery = 50, cursor: CursorQuery = None) -> ThresholdPage:
    """List thresholds by name."""
    after = str(decode_cursor(cursor, arity=1)[0]) if cursor else None
    thresholds = await list_thresholds(session, after=after, limit=limit + 1)
    page = thresholds[:limit]
    counts = await firing_counts(session, [threshold.name for threshold in page])
    next_cursor = encode_cursor(page[-1].name) if len(thresholds) > limit else None
    return ThresholdPage(items=[threshold_out(item, counts[item.name]) for item in page], next_cursor=next_cursor)


@router.get("/{name}", response_model=ThresholdOut)
async def read_threshold(name: ThresholdName, session: Session) -> ThresholdOut:
    """Return a threshold's definition and how often it has fired."""
    threshold = await get_threshold(session, name)
    return threshold_out(threshold, (await firing_counts(session, [name]))[name])


@router.put("/{name}", response_model=ThresholdSaved, responses={201: {"model": ThresholdSaved}})
async def save_threshold(name: ThresholdName, body: ThresholdIn, request: Request, session: Session) -> JSONResponse:
    """Create (201) or change (200) a threshold; saving it unchanged does nothing.

    With `apply_to_existing`, each save that changes it starts a backfill job, which fires once
    for each contact already at or above `min_score` that it has not fired for.
    """
    result = await put_threshold(session, name, body)
    if result.backfill is not None:
        await enqueue(request.app.state.redis, request.app.state.settings.namespace, result.backfill)
    firings = (await firing_counts(session, [name]))[name]
    saved = ThresholdSaved(
        **threshold_out(result.threshold, firings).model_dump(),
        backfill_job=job_out(result.backfill) if result.backfill is not None else None,
    )
    return JSONResponse(saved.model_dump(mode="json"), status_code=201 if result.created else 200)


@router.delete("/{name}", status_code=204)
async def remove_threshold(name: ThresholdName, session: Session) -> Response:
    """Delete a threshold, its per-contact state and its firings."""
    await delete_threshold(session, name)
    return Response(status_code=204)


@router.get("/{name}/firings", response_model=FiringPage)
async def read_firings(
    name: ThresholdName,
    session: Session,
    contact_id: Annotated[str | None, Query(max_length=32)] = None,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
) -> FiringPage:
    """List the times the threshold fired (its action ran), oldest first, optionally for one contact."""
    await get_threshold(session, name)
    after = None
    if cursor:
        value = decode_cursor(cursor, arity=1)[0]
        if not isinstance(value, int):
            raise invalid("cursor", "malformed cursor; pass the next_cursor of the previous page")
        after = value
    firings = await list_firings(session, threshold_trigger_key(name), contact_id=contact_id, after=after, limit=limit + 1)
    page = firings[:limit]
    next_cursor = encode_cursor(page[-1].id) if len(firings) > limit else None
    return FiringPage(items=[FiringOut.model_validate(item, from_attributes=True) for item in page], next_cursor=next_cursor)
