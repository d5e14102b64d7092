"""Public routes for contacts, their timeline and their score."""

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from services.contacts.people.router import ContactIn, ContactOut
from services.gateway.keys.auth import require_scope
from services.gateway.routes.forward import forward
from services.kit.pagination import CursorQuery, LimitQuery

router = APIRouter(prefix="/v1", tags=["contacts"])

ReadContacts = Annotated[object, Depends(require_scope("contacts:read"))]
WriteContacts = Annotated[object, Depends(require_scope("contacts:write"))]
ReadScoring = Annotated[object, Depends(require_scope("scoring:read"))]


@router.post("/contacts", status_code=201, response_model=ContactOut)
async def create_contact(body: ContactIn, request: Request, _: WriteContacts) -> Response:
    """Create a contact; an existing address is a 409 naming the existing id."""
    return await forward(request, "contacts", "POST", "/contacts", json=body.model_dump(mode="json"))


@router.get("/contacts/{contact_id}", response_model=ContactOut)
async def read_contact(contact_id: str, request: Request, _: ReadContacts) -> Response:
    """Read one contact."""
    return await forward(request, "contacts", "GET", f"/contacts/{contact_id}")


@router.get("/contacts/{contact_id}/timeline")
async def read_timeline(
    contact_id: str, request: Request, _: ReadContacts, limit: LimitQuery = 50, cursor: CursorQuery = None
) -> Response:
    """List a contact's behaviour events, newest first."""
    params = {"limit": limit, "cursor": cursor}
    return await forward(request, "contacts", "GET", f"/contacts/{contact_id}/timeline", params=params)


@router.get("/contacts/{contact_id}/score")
async def read_score(contact_id: str, request: Request, _: ReadScoring) -> Response:
    """Return a contact's score per model."""
    return await forward(request, "scoring", "GET", f"/contacts/{contact_id}/score")
