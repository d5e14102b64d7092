"""Public routes for behaviour events."""

import json
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from services.contacts.timeline.router import BatchIn, BatchOut, EventAccepted
from services.contacts.timeline.service import EventIn
from services.gateway.idempotency.middleware import HEADER as IDEMPOTENCY_HEADER
from services.gateway.keys.auth import require_scope
from services.gateway.keys.models import ApiKey
from services.gateway.routes.forward import forward
from services.gateway.routes.json_body import StrictJsonRoute

router = APIRouter(prefix="/v1", tags=["events"], route_class=StrictJsonRoute)

WriteEvents = Annotated[ApiKey, Depends(require_scope("events:write"))]

# The namespace of the event ids derived from an Idempotency-Key.
_EVENT_IDS = uuid.UUID("5b0d6f0e-3c39-4a8e-9a51-0f6f0c1d2e7a")


@router.post("/events", status_code=202, response_model=EventAccepted)
async def post_event(body: EventIn, request: Request, key: WriteEvents) -> Response:
    """Accept one behaviour event; the same `id` sent twice is stored and counted once."""
    document = body.model_dump(mode="json", exclude_none=True)
    # Give an id to events without one here, so a retry between gateway and contacts stores one event.
    document.setdefault("id", _event_id(request, key, 0, document))
    return await forward(request, "contacts", "POST", "/events", json=document)


@router.post("/events/batch", status_code=202, response_model=BatchOut)
async def post_events(body: BatchIn, request: Request, key: WriteEvents) -> Response:
    """Accept up to 1,000 events and return a result per event, in the order sent."""
    events = [
        {**event, "id": event.get("id") or _event_id(request, key, index, event)} if isinstance(event, dict) else event
        for index, event in enumerate(body.events)
    ]
    return await forward(request, "contacts", "POST", "/events/batch", json={"events": events})


def _event_id(request: Request, key: ApiKey, index: int, event: dict[str, Any]) -> str:
    """Return the id of the `index`th event of a request that sent none.

    A request that timed out at the gateway may still have been stored by the contacts service.
    Its retry with the same Idempotency-Key then gets the same ids, so the events are stored once.
    The event's content is part of the id, because a key may be used again for other events once
    the gateway forgot it.
    """
    idempotency_key = request.headers.get(IDEMPOTENCY_HEADER)
    if idempotency_key is None:
        return uuid.uuid4().hex

    content = json.dumps(event, sort_keys=True, separators=(",", ":"))
    return uuid.uuid5(_EVENT_IDS, f"{key.id}\n{idempotency_key}\n{index}\n{content}").hex
