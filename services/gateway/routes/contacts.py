"""Public routes for contacts, their attributes, consent, timeline, export and score."""

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response

from services.contacts.attributes.router import AttributeIn, AttributeOut
from services.contacts.attributes.types import ATTRIBUTE_NAME_PATTERN
from services.contacts.consent.router import ConsentIn
from services.contacts.consent.views import ConsentOut
from services.contacts.people.schemas import ContactIn, ContactOut, ContactPatch, ContactUpsert
from services.contacts.timeline.router import EventOut
from services.gateway.keys.auth import require_scope
from services.gateway.routes.forward import forward
from services.gateway.routes.json_body import StrictJsonRoute
from services.kit.pagination import CursorQuery, LimitQuery, Page

router = APIRouter(prefix="/v1", tags=["contacts"], route_class=StrictJsonRoute)

ReadContacts = Annotated[object, Depends(require_scope("contacts:read"))]
WriteContacts = Annotated[object, Depends(require_scope("contacts:write"))]
ReadScoring = Annotated[object, Depends(require_scope("scoring:read"))]
ReadEverything = Annotated[object, Depends(require_scope("contacts:read", "segments:read", "scoring:read", "sequences:read"))]


def _body(model: Any) -> dict[str, Any]:
    # Only the fields the caller sent, so PATCH and upsert leave the others as they are.
    return model.model_dump(mode="json", exclude_unset=True)  # type: ignore[no-any-return]


@router.post("/contacts", status_code=201, response_model=ContactOut)
async def create_contact(body: ContactIn, request: Request, _: WriteContacts) -> Response:
    """Create a contact; an existing address (matched ignoring case) is a 409 naming the existing id."""
    return await forward(request, "contacts", "POST", "/contacts", json=_body(body))


@router.put("/contacts/by-email/{email:path}", response_model=ContactOut, responses={201: {"model": ContactOut}})
async def upsert_contact(email: str, body: ContactUpsert, request: Request, _: WriteContacts) -> Response:
    """Create the contact of this address (201) or change the existing one (200)."""
    return await forward(request, "contacts", "PUT", f"/contacts/by-email/{email}", json=_body(body))


@router.get("/contacts", response_model=Page[ContactOut])
async def list_contacts(
    request: Request,
    _: ReadContacts,
    email: Annotated[str | None, Query(max_length=320)] = None,
    stage: Annotated[str | None, Query(max_length=32)] = None,
    segment_id: Annotated[str | None, Query(max_length=32)] = None,
    updated_since: Annotated[datetime | None, Query(description="ISO 8601 with an offset")] = None,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
) -> Response:
    """List contacts, oldest change first, filtered by email, stage, segment or last change."""
    params = {
        "email": email,
        "stage": stage,
        "segment_id": segment_id,
        "updated_since": updated_since.isoformat() if updated_since else None,
        "limit": limit,
        "cursor": cursor,
    }
    return await forward(request, "contacts", "GET", "/contacts", params=params)


@router.get("/contacts/{contact_id}", response_model=ContactOut)
async def read_contact(contact_id: str, request: Request, _: ReadContacts) -> Response:
    """Read one contact with its company and consent."""
    return await forward(request, "contacts", "GET", f"/contacts/{contact_id}")


@router.patch("/contacts/{contact_id}", response_model=ContactOut)
async def patch_contact(contact_id: str, body: ContactPatch, request: Request, _: WriteContacts) -> Response:
    """Change the fields sent; the stage only moves forward here (409 otherwise)."""
    return await forward(request, "contacts", "PATCH", f"/contacts/{contact_id}", json=_body(body))


@router.delete("/contacts/{contact_id}", status_code=204)
async def erase_contact(contact_id: str, request: Request, _: WriteContacts) -> Response:
    """Erase the person's data in every service, keeping only an anonymous tombstone for counts."""
    return await forward(request, "contacts", "DELETE", f"/contacts/{contact_id}")


@router.get("/contacts/{contact_id}/export")
async def export_contact(contact_id: str, request: Request, _: ReadEverything) -> Response:
    """Return everything held about the person, from every service, in one document (503 if one is down).

    The document contains the segment memberships, the score ledger and the emails sent too, so the
    key needs the read scopes of those areas besides `contacts:read`.
    """
    return await forward(request, "contacts", "GET", f"/contacts/{contact_id}/export")


@router.get("/contacts/{contact_id}/timeline", response_model=Page[EventOut])
async def read_timeline(
    contact_id: str, request: Request, _: ReadContacts, limit: LimitQuery = 50, cursor: CursorQuery = None
) -> Response:
    """List a contact's behaviour events, newest first."""
    params = {"limit": limit, "cursor": cursor}
    return await forward(request, "contacts", "GET", f"/contacts/{contact_id}/timeline", params=params)


@router.get("/contacts/{contact_id}/consent", response_model=ConsentOut)
async def read_consent(contact_id: str, request: Request, _: ReadContacts) -> Response:
    """Read a contact's consent, overall and per topic, with every change and its source."""
    return await forward(request, "contacts", "GET", f"/contacts/{contact_id}/consent")


@router.put("/contacts/{contact_id}/consent", response_model=ConsentOut)
async def put_consent(contact_id: str, body: ConsentIn, request: Request, _: WriteContacts) -> Response:
    """Subscribe or unsubscribe (overall or one topic); re-subscribing needs `evidence` of the person's consent."""
    return await forward(request, "contacts", "PUT", f"/contacts/{contact_id}/consent", json=_body(body))


@router.get("/contacts/{contact_id}/score")
async def read_score(contact_id: str, request: Request, _: ReadScoring) -> Response:
    """Return a contact's score per model."""
    return await forward(request, "scoring", "GET", f"/contacts/{contact_id}/score")


@router.get("/attributes", response_model=dict[str, list[AttributeOut]])
async def list_attributes(request: Request, _: ReadContacts) -> Response:
    """List the custom attribute definitions."""
    return await forward(request, "contacts", "GET", "/attributes")


@router.put("/attributes/{name}", response_model=AttributeOut, responses={201: {"model": AttributeOut}})
async def put_attribute(
    name: Annotated[str, Path(pattern=ATTRIBUTE_NAME_PATTERN)], body: AttributeIn, request: Request, _: WriteContacts
) -> Response:
    """Define a custom attribute (201) or change its label, description or enum values (200); its type is fixed."""
    return await forward(request, "contacts", "PUT", f"/attributes/{name}", json=_body(body))
