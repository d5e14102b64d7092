"""Internal routes of the behaviour timeline."""

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from sqlmodel.ext.asyncio.session import AsyncSession

from services.contacts.timeline.service import EventIn, list_timeline, record_event
from services.kit.app import get_outbox, get_session
from services.kit.outbox import Outbox
from services.kit.pagination import CursorQuery, LimitQuery, Page, decode_cursor, encode_cursor
from services.kit.problems import Problem, validation_problem

router = APIRouter(tags=["events"])

Session = Annotated[AsyncSession, Depends(get_session)]
OutboxDep = Annotated[Outbox, Depends(get_outbox)]


class EventOut(BaseModel):
    id: str
    contact_id: str
    type: str
    occurred_at: datetime
    received_at: datetime
    properties: dict[str, Any]


class EventAccepted(BaseModel):
    id: str
    contact_id: str
    status: str = Field(description="`stored`, or `duplicate` when the id was seen before")


class BatchIn(BaseModel):
    events: list[dict[str, Any]] = Field(min_length=1, max_length=1000)


@router.post("/events", status_code=202, response_model=EventAccepted)
async def post_event(body: EventIn, session: Session, outbox: OutboxDep) -> EventAccepted:
    """Store one behaviour event, once per id."""
    event, created = await record_event(session, outbox, body)
    return EventAccepted(id=event.id, contact_id=event.contact_id, status="stored" if created else "duplicate")


@router.post("/events/batch", status_code=202)
async def post_events(body: BatchIn, request: Request, outbox: OutboxDep) -> JSONResponse:
    """Store up to 1,000 events; each gets its own result, and one bad event fails only itself."""
    results: list[dict[str, Any]] = []
    for index, raw in enumerate(body.events):
        try:
            incoming = EventIn.model_validate(raw)
            async with request.app.state.db.session() as session:
                event, created = await record_event(session, outbox, incoming)
            results.append({"index": index, "id": event.id, "status": "stored" if created else "duplicate"})
        except Problem as problem:
            results.append({"index": index, "status": "rejected", "error": problem.to_body()})
        except ValidationError as error:
            problem = validation_problem(list(error.errors()))
            results.append({"index": index, "status": "rejected", "error": problem.to_body()})
    return JSONResponse({"items": results}, status_code=202)


@router.get("/contacts/{contact_id}/timeline", response_model=Page[EventOut])
async def get_timeline(contact_id: str, session: Session, limit: LimitQuery = 50, cursor: CursorQuery = None) -> Page[EventOut]:
    """List a contact's events, newest first."""
    after = None
    if cursor:
        occurred_at, event_id = decode_cursor(cursor, arity=2)
        after = (datetime.fromisoformat(occurred_at), str(event_id))
    events = await list_timeline(session, contact_id, limit=limit, after=after)
    items = [EventOut.model_validate(event, from_attributes=True) for event in events]
    next_cursor = encode_cursor(events[-1].occurred_at.isoformat(), events[-1].id) if len(events) == limit else None
    return Page[EventOut](items=items, next_cursor=next_cursor)
