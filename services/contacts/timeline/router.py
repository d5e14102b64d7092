"""Internal routes of the behaviour timeline."""

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field, ValidationError

from services.contacts.deps import OutboxDep, Session, SettingsDep
from services.contacts.timeline.ingest import store_events
from services.contacts.timeline.service import EventIn, EventResult, list_timeline, rejected
from services.kit.pagination import CursorQuery, LimitQuery, Page, decode_time_cursor, encode_cursor
from services.kit.problems import Problem, validation_problem

router = APIRouter(tags=["events"])

MAX_BATCH = 1000


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
    events: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_BATCH)


class BatchResult(BaseModel):
    index: int
    status: str = Field(description="stored, duplicate or rejected")
    id: str | None = None
    contact_id: str | None = None
    error: dict[str, Any] | None = Field(default=None, description="The problem of a rejected event")


class BatchOut(BaseModel):
    items: list[BatchResult]


@router.post("/events", status_code=202, response_model=EventAccepted)
async def post_event(body: EventIn, request: Request, outbox: OutboxDep, settings: SettingsDep) -> EventAccepted:
    """Store one behaviour event, once per id."""
    [result] = await store_events(request.app.state.db, outbox, [(0, body)], settings)
    if result.status == "rejected":
        raise _problem(result)
    return EventAccepted(id=result.id or "", contact_id=result.contact_id or "", status=result.status)


@router.post("/events/batch", status_code=202, response_model=BatchOut)
async def post_events(body: BatchIn, request: Request, outbox: OutboxDep, settings: SettingsDep) -> BatchOut:
    """Store up to 1,000 events; each gets its own result, and one bad event fails only itself."""
    valid: list[tuple[int, EventIn]] = []
    results: list[EventResult] = []
    for index, raw in enumerate(body.events):
        try:
            valid.append((index, EventIn.model_validate(raw)))
        except ValidationError as error:
            results.append(rejected(index, validation_problem(list(error.errors()))))

    results.extend(await store_events(request.app.state.db, outbox, valid, settings))
    results.sort(key=lambda result: result.index)
    return BatchOut(items=[BatchResult(**result.to_dict()) for result in results])


@router.get("/contacts/{contact_id}/timeline", response_model=Page[EventOut])
async def get_timeline(contact_id: str, session: Session, limit: LimitQuery = 50, cursor: CursorQuery = None) -> Page[EventOut]:
    """List a contact's events, newest first by when they happened."""
    before = None
    if cursor:
        before = decode_time_cursor(cursor)
    events = await list_timeline(session, contact_id, limit=limit, before=before)
    items = [EventOut.model_validate(event, from_attributes=True) for event in events]
    next_cursor = encode_cursor(events[-1].occurred_at.isoformat(), events[-1].id) if len(events) == limit else None
    return Page[EventOut](items=items, next_cursor=next_cursor)


def _problem(result: EventResult) -> Problem:
    """Rebuild the problem of a rejected single event, so the route answers with its status."""
    body = dict(result.error or {})
    problem = Problem(str(body.get("detail", "")), errors=body.get("errors"))
    problem.status = int(body.get("status", 422))
    problem.title = str(body.get("title", "Validation failed"))
    problem.slug = str(body.get("type", "")).rsplit("/", 1)[-1] or "validation"
    return problem
