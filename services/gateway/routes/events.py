"""Public routes for behaviour events."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from services.contacts.timeline.router import BatchIn, BatchOut, EventAccepted
from services.contacts.timeline.service import EventIn
from services.gateway.keys.auth import require_scope
from services.gateway.routes.forward import forward
from services.gateway.routes.json_body import StrictJsonRoute

router = APIRouter(prefix="/v1", tags=["events"], route_class=StrictJsonRoute)

WriteEvents = Annotated[object, Depends(require_scope("events:write"))]


@router.post("/events", status_code=202, response_model=EventAccepted)
async def post_event(body: EventIn, request: Request, _: WriteEvents) -> Response:
    """Accept one behaviour event; the same `id` sent twice is stored and counted once."""
    document = body.model_dump(mode="json", exclude_none=True)
    # Give an id to events without one here, so a retry between gateway and contacts stores one event.
    document.setdefault("id", uuid.uuid4().hex)
    return await forward(request, "contacts", "POST", "/events", json=document)


@router.post("/events/batch", status_code=202, response_model=BatchOut)
async def post_events(body: BatchIn, request: Request, _: WriteEvents) -> Response:
    """Accept up to 1,000 events and return a result per event, in the order sent."""
    events = [{**event, "id": event.get("id") or uuid.uuid4().hex} if isinstance(event, dict) else event for event in body.events]
    return await forward(request, "contacts", "POST", "/events/batch", json={"events": events})
