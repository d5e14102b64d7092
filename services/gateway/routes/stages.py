"""Public routes for lifecycle stage definitions, transitions and history."""

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from services.contacts.stages.definitions import StageDefinition, StageDefinitionRevision
from services.contacts.stages.router import StageChangeOut, StageMoveIn, StagesOut
from services.gateway.keys.auth import require_scope
from services.gateway.keys.models import ApiKey
from services.gateway.routes.forward import forward
from services.gateway.routes.json_body import StrictJsonRoute
from services.kit.pagination import CursorQuery, LimitQuery, Page

router = APIRouter(prefix="/v1", tags=["stages"], route_class=StrictJsonRoute)

ReadContacts = Annotated[object, Depends(require_scope("contacts:read"))]
WriteContacts = Annotated[object, Depends(require_scope("contacts:write"))]
WritingKey = Annotated[ApiKey, Depends(require_scope("contacts:write"))]


@router.get("/stages", response_model=StagesOut)
async def list_stages(request: Request, _: ReadContacts) -> Response:
    """List each stage's current definition, entry criteria, version and approvers."""
    return await forward(request, "contacts", "GET", "/stages")


@router.put("/stages/{stage}", response_model=StageDefinition)
async def revise_stage(stage: str, body: StageDefinitionRevision, request: Request, _: WriteContacts) -> Response:
    """Store a new version of one stage's definition."""
    return await forward(request, "contacts", "PUT", f"/stages/{stage}", json=body.model_dump(mode="json"))


@router.post("/contacts/{contact_id}/stage", response_model=StageChangeOut)
async def move_stage(contact_id: str, body: StageMoveIn, request: Request, key: WritingKey) -> Response:
    """Move a contact's stage: 409 for a backward move without allow_regression, 422 for a missing reason.

    Without an `actor`, the history names the API key that made the change.
    """
    document = body.model_dump(mode="json")
    document["actor"] = body.actor or f"api_key:{key.name}"
    return await forward(request, "contacts", "POST", f"/contacts/{contact_id}/stage", json=document)


@router.get("/contacts/{contact_id}/stage-history", response_model=Page[StageChangeOut])
async def read_stage_history(
    contact_id: str, request: Request, _: ReadContacts, limit: LimitQuery = 50, cursor: CursorQuery = None
) -> Response:
    """List every stage change with from, to, at, reason and actor, oldest first."""
    params = {"limit": limit, "cursor": cursor}
    return await forward(request, "contacts", "GET", f"/contacts/{contact_id}/stage-history", params=params)
