"""Public routes for drip sequences, enrolments, reports and sent messages."""

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import Response

from services.gateway.keys.auth import require_scope
from services.gateway.routes.forward import forward
from services.gateway.routes.json_body import StrictJsonRoute
from services.kit.pagination import CursorQuery, LimitQuery, Page
from services.sequencer.engagement.report import SequenceReport
from services.sequencer.engagement.router import MessageEventOut, MessageOut
from services.sequencer.enrolments.router import EnrollmentIn, EnrollmentOut
from services.sequencer.sequences.store import SequenceOut

router = APIRouter(prefix="/v1", tags=["sequences"], route_class=StrictJsonRoute)

ReadSequences = Annotated[object, Depends(require_scope("sequences:read"))]
WriteSequences = Annotated[object, Depends(require_scope("sequences:write"))]

# The sequencer validates definitions itself, so that each error names its field by document path
# (steps[2].wait.days); the gateway passes the JSON object on and documents its schema.
Definition = Annotated[dict[str, Any], Body(description="A sequence definition (see SequenceDefinition)")]
_DEFINITION_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SequenceDefinition"}}},
    }
}


@router.post("/sequences", status_code=201, response_model=SequenceOut, openapi_extra=_DEFINITION_BODY)
async def create_sequence(body: Definition, request: Request, _: WriteSequences) -> Response:
    """Create a sequence as a draft; each invalid field is named by its path, e.g. steps[2].wait.days."""
    return await forward(request, "sequencer", "POST", "/sequences", json=body)


@router.get("/sequences", response_model=Page[SequenceOut])
async def list_sequences(
    request: Request,
    _: ReadSequences,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
    status: Annotated[str | None, Query(pattern="^(draft|active|paused)$")] = None,
) -> Response:
    """List sequences with their current version, oldest first."""
    params = {"limit": limit, "cursor": cursor, "status": status}
    return await forward(request, "sequencer", "GET", "/sequences", params=params)


@router.get("/sequences/{sequence_id}", response_model=SequenceOut)
async def read_sequence(sequence_id: str, request: Request, _: ReadSequences) -> Response:
    """Read a sequence and the definition of its current version."""
    return await forward(request, "sequencer", "GET", f"/sequences/{sequence_id}")


@router.put("/sequences/{sequence_id}", response_model=SequenceOut, openapi_extra=_DEFINITION_BODY)
async def replace_sequence(sequence_id: str, body: Definition, request: Request, _: WriteSequences) -> Response:
    """Edit a sequence: a draft changes in place; an activated one gets a new version, and enrolled contacts
    finish the version they started."""
    return await forward(request, "sequencer", "PUT", f"/sequences/{sequence_id}", json=body)


@router.post("/sequences/{sequence_id}/activate", response_model=SequenceOut)
async def activate_sequence(sequence_id: str, request: Request, _: WriteSequences) -> Response:
    """Start a draft or resume a paused sequence; a 422 names each email step whose template does not exist."""
    return await forward(request, "sequencer", "POST", f"/sequences/{sequence_id}/activate")


@router.post("/sequences/{sequence_id}/pause", response_model=SequenceOut)
async def pause_sequence(sequence_id: str, request: Request, _: WriteSequences) -> Response:
    """Stop sending; enrolled contacts keep their place until the sequence is activated again."""
    return await forward(request, "sequencer", "POST", f"/sequences/{sequence_id}/pause")


@router.post("/sequences/{sequence_id}/enrollments", status_code=201, response_model=EnrollmentOut)
async def enrol_contact(sequence_id: str, body: EnrollmentIn, request: Request, _: WriteSequences) -> Response:
    """Enrol a contact by hand; a 409 says why when it cannot be enrolled (enrolled, reentry, unsubscribed, ...)."""
    path = f"/sequences/{sequence_id}/enrollments"
    return await forward(request, "sequencer", "POST", path, json=body.model_dump(mode="json"))


@router.get("/sequences/{sequence_id}/enrollments", response_model=Page[EnrollmentOut])
async def list_enrollments(
    sequence_id: str,
    request: Request,
    _: ReadSequences,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
    state: Annotated[str | None, Query(pattern="^(active|completed|exited)$")] = None,
) -> Response:
    """List a sequence's enrolments, oldest first."""
    params = {"limit": limit, "cursor": cursor, "state": state}
    return await forward(request, "sequencer", "GET", f"/sequences/{sequence_id}/enrollments", params=params)


@router.get("/enrollments/{enrollment_id}", response_model=EnrollmentOut)
async def read_enrollment(enrollment_id: str, request: Request, _: ReadSequences) -> Response:
    """Read an enrolment with each step's due time (UTC) and outcome."""
    return await forward(request, "sequencer", "GET", f"/enrollments/{enrollment_id}")


@router.get("/sequences/{sequence_id}/report", response_model=SequenceReport)
async def read_report(sequence_id: str, request: Request, _: ReadSequences) -> Response:
    """Per email step: sent, delivered, unique and total opens, machine opens, clicks, click-through rate over
    delivered, unsubscribes, bounces and goals reached; a rate is null when nothing was delivered."""
    return await forward(request, "sequencer", "GET", f"/sequences/{sequence_id}/report")


@router.get("/messages/{message_id}", response_model=MessageOut)
async def read_message(message_id: str, request: Request, _: ReadSequences) -> Response:
    """Read a sent message by its Message-ID (with or without angle brackets): send state and delivery status."""
    return await forward(request, "sequencer", "GET", f"/messages/{message_id}")


@router.get("/messages/{message_id}/events", response_model=Page[MessageEventOut])
async def read_message_events(message_id: str, request: Request, _: ReadSequences) -> Response:
    """List a message's delivery, open and click events, oldest first, each with its human or machine verdict."""
    return await forward(request, "sequencer", "GET", f"/messages/{message_id}/events")
