"""Public routes for segments and their members."""

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from services.contacts.segments.router import MemberOut, SegmentIn, SegmentOut
from services.gateway.keys.auth import require_scope
from services.gateway.routes.forward import forward
from services.gateway.routes.json_body import StrictJsonRoute
from services.kit.pagination import CursorQuery, LimitQuery, Page

router = APIRouter(prefix="/v1", tags=["segments"], route_class=StrictJsonRoute)

ReadSegments = Annotated[object, Depends(require_scope("segments:read"))]
WriteSegments = Annotated[object, Depends(require_scope("segments:write"))]


@router.post("/segments", status_code=201, response_model=SegmentOut)
async def create_segment(body: SegmentIn, request: Request, _: WriteSegments) -> Response:
    """Create a segment from a filter; an invalid filter is a 422 naming the bad part, such as filter.all[1].within_days."""
    return await forward(request, "contacts", "POST", "/segments", json=body.model_dump(mode="json"))


@router.get("/segments", response_model=Page[SegmentOut])
async def list_segments(request: Request, _: ReadSegments, limit: LimitQuery = 50, cursor: CursorQuery = None) -> Response:
    """List segments with their number of members."""
    return await forward(request, "contacts", "GET", "/segments", params={"limit": limit, "cursor": cursor})


@router.get("/segments/{segment_id}", response_model=SegmentOut)
async def read_segment(segment_id: str, request: Request, _: ReadSegments) -> Response:
    """Read one segment."""
    return await forward(request, "contacts", "GET", f"/segments/{segment_id}")


@router.get("/segments/{segment_id}/contacts", response_model=Page[MemberOut])
async def read_members(
    segment_id: str, request: Request, _: ReadSegments, limit: LimitQuery = 50, cursor: CursorQuery = None
) -> Response:
    """List the current members of a segment, with when each entered."""
    params = {"limit": limit, "cursor": cursor}
    return await forward(request, "contacts", "GET", f"/segments/{segment_id}/contacts", params=params)
